"""The Open Inference Protocol's gRPC service, ``inference.GRPCInferenceService``, on grpcio.

    grpc_service.proto      the protocol's service and messages (with the repository extension)
    grpc_service_pb2*.py    stubs generated from it by :mod:`.generate` (committed; do not edit)
    service                 the servicer: the same models, checks, limits and answers as REST
"""
