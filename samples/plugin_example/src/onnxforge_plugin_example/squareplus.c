/* Squareplus, y = (x + sqrt(x*x + b)) / 2, as a native ONNX Runtime custom op.
 *
 * Built against the ONNX Runtime C API without its headers: the few declarations needed are
 * written out below. They use only the first 102 slots of OrtApi and version 1 of OrtCustomOp,
 * which ONNX Runtime keeps stable across releases (the C API only ever appends).
 * ONNX Runtime calls RegisterCustomOps when a session's options load this library.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct OrtStatus OrtStatus;
typedef struct OrtApi OrtApi; /* opaque here: used as a table of function pointers */

typedef struct OrtApiBase {
  const OrtApi* (*GetApi)(uint32_t version);
  const char* (*GetVersionString)(void);
} OrtApiBase;

typedef struct OrtCustomOp {
  uint32_t version; /* 1: ONNX Runtime reads only the fields below */
  void* (*CreateKernel)(const struct OrtCustomOp* op, const OrtApi* api, const void* info);
  const char* (*GetName)(const struct OrtCustomOp* op);
  const char* (*GetExecutionProviderType)(const struct OrtCustomOp* op);
  int (*GetInputType)(const struct OrtCustomOp* op, size_t index);
  size_t (*GetInputTypeCount)(const struct OrtCustomOp* op);
  int (*GetOutputType)(const struct OrtCustomOp* op, size_t index);
  size_t (*GetOutputTypeCount)(const struct OrtCustomOp* op);
  void (*KernelCompute)(void* kernel, void* context);
  void (*KernelDestroy)(void* kernel);
  /* ONNX Runtime 1.19 calls these two whatever the version says (0: the input/output is required). */
  int (*GetInputCharacteristic)(const struct OrtCustomOp* op, size_t index);
  int (*GetOutputCharacteristic)(const struct OrtCustomOp* op, size_t index);
  /* Fields later API versions appended (memory types, variadic arity, V2 kernels, shape
   * inference, opset range, in-place and alias hints): left NULL, ONNX Runtime checks `version`
   * before it reads them. */
  void* later_fields[24];
} OrtCustomOp;

/* Positions of the functions used, in OrtApi's frozen version-1 block. */
enum {
  SLOT_CREATE_CUSTOM_OP_DOMAIN = 26,
  SLOT_CUSTOM_OP_DOMAIN_ADD = 27,
  SLOT_ADD_CUSTOM_OP_DOMAIN = 28,
  SLOT_GET_TENSOR_MUTABLE_DATA = 51,
  SLOT_GET_DIMENSIONS_COUNT = 61,
  SLOT_GET_DIMENSIONS = 62,
  SLOT_GET_TENSOR_SHAPE_ELEMENT_COUNT = 64,
  SLOT_GET_TENSOR_TYPE_AND_SHAPE = 65,
  SLOT_KERNEL_INFO_GET_ATTRIBUTE_FLOAT = 85,
  SLOT_KERNEL_CONTEXT_GET_INPUT = 90,
  SLOT_KERNEL_CONTEXT_GET_OUTPUT = 91,
  SLOT_RELEASE_STATUS = 93,
  SLOT_RELEASE_TENSOR_TYPE_AND_SHAPE_INFO = 99,
};
enum { ELEMENT_FLOAT = 1 };
#define MAX_RANK 16

static const OrtApi* g_api;
#define FN(type, slot) ((type)(((void* const*)g_api)[slot]))

typedef OrtStatus* (*CreateDomainFn)(const char*, void**);
typedef OrtStatus* (*DomainAddFn)(void*, const OrtCustomOp*);
typedef OrtStatus* (*AddDomainFn)(void*, void*);
typedef OrtStatus* (*MutableDataFn)(const void*, void**);
typedef OrtStatus* (*DimsCountFn)(const void*, size_t*);
typedef OrtStatus* (*DimsFn)(const void*, int64_t*, size_t);
typedef OrtStatus* (*ElementCountFn)(const void*, size_t*);
typedef OrtStatus* (*TypeAndShapeFn)(const void*, void**);
typedef OrtStatus* (*AttrFloatFn)(const void*, const char*, float*);
typedef OrtStatus* (*GetInputFn)(const void*, size_t, const void**);
typedef OrtStatus* (*GetOutputFn)(void*, size_t, const int64_t*, size_t, void**);
typedef void (*ReleaseStatusFn)(OrtStatus*);
typedef void (*ReleaseInfoFn)(void*);

typedef struct Kernel {
  float b;
} Kernel;

static void* create_kernel(const OrtCustomOp* op, const OrtApi* api, const void* info) {
  (void)op;
  (void)api;
  Kernel* k = (Kernel*)malloc(sizeof(Kernel));
  if (!k) return NULL;
  k->b = 4.0f;
  OrtStatus* st = FN(AttrFloatFn, SLOT_KERNEL_INFO_GET_ATTRIBUTE_FLOAT)(info, "b", &k->b);
  if (st) { /* attribute absent: keep the default */
    FN(ReleaseStatusFn, SLOT_RELEASE_STATUS)(st);
    k->b = 4.0f;
  }
  return k;
}

static void compute(void* kernel, void* context) {
  const Kernel* k = (const Kernel*)kernel;
  const void* input = NULL;
  void* info = NULL;
  void* output = NULL;
  size_t rank = 0, count = 0;
  int64_t dims[MAX_RANK];
  float* x = NULL;
  float* y = NULL;
  if (FN(GetInputFn, SLOT_KERNEL_CONTEXT_GET_INPUT)(context, 0, &input)) return;
  if (FN(TypeAndShapeFn, SLOT_GET_TENSOR_TYPE_AND_SHAPE)(input, &info)) return;
  FN(DimsCountFn, SLOT_GET_DIMENSIONS_COUNT)(info, &rank);
  if (rank > MAX_RANK) rank = MAX_RANK;
  FN(DimsFn, SLOT_GET_DIMENSIONS)(info, dims, rank);
  FN(ElementCountFn, SLOT_GET_TENSOR_SHAPE_ELEMENT_COUNT)(info, &count);
  FN(ReleaseInfoFn, SLOT_RELEASE_TENSOR_TYPE_AND_SHAPE_INFO)(info);
  if (FN(GetOutputFn, SLOT_KERNEL_CONTEXT_GET_OUTPUT)(context, 0, dims, rank, &output)) return;
  FN(MutableDataFn, SLOT_GET_TENSOR_MUTABLE_DATA)(input, (void**)&x);
  FN(MutableDataFn, SLOT_GET_TENSOR_MUTABLE_DATA)(output, (void**)&y);
  for (size_t i = 0; i < count; ++i) {
    const float v = x[i];
    y[i] = 0.5f * (v + sqrtf(v * v + k->b));
  }
}

static void destroy_kernel(void* kernel) { free(kernel); }
static const char* op_name(const OrtCustomOp* op) { (void)op; return "Squareplus"; }
static const char* op_provider(const OrtCustomOp* op) { (void)op; return "CPUExecutionProvider"; }
static int op_type(const OrtCustomOp* op, size_t i) { (void)op; (void)i; return ELEMENT_FLOAT; }
static size_t op_count(const OrtCustomOp* op) { (void)op; return 1; }
static int op_required(const OrtCustomOp* op, size_t i) { (void)op; (void)i; return 0; }

static const OrtCustomOp g_op = {
    1, create_kernel, op_name, op_provider, op_type, op_count, op_type, op_count, compute, destroy_kernel,
    op_required, op_required, {0},
};

/* The entry point ONNX Runtime looks for. The domain lives as long as the process. */
OrtStatus* RegisterCustomOps(void* options, const OrtApiBase* base) {
  void* domain = NULL;
  OrtStatus* st;
  g_api = base->GetApi(1);
  st = FN(CreateDomainFn, SLOT_CREATE_CUSTOM_OP_DOMAIN)("onnxforge_example", &domain);
  if (st) return st;
  st = FN(DomainAddFn, SLOT_CUSTOM_OP_DOMAIN_ADD)(domain, &g_op);
  if (st) return st;
  return FN(AddDomainFn, SLOT_ADD_CUSTOM_OP_DOMAIN)(options, domain);
}
