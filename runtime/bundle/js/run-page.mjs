#!/usr/bin/env node
// Train a --web bundle's page in headless Chromium and print window.onnxforgeResult as one JSON line:
//   node run-page.mjs BUNDLE_DIR [--backend wasm|webgpu|auto] [--screenshot page.png] [--timeout 300]
//                    [--save-weights trained.safetensors] [--save-model trained.onnx]   (what the buttons download)
// auto: the page picks (WebGPU through SwiftShader when the bundle carries it). The folder is served by a static file server on 127.0.0.1 (no COOP/COEP headers, as any plain
// server); every request to another origin is refused and reported (the page must need no internet).
// Chromium: $CHROMIUM, else /usr/bin/chromium (Debian's package); driven by playwright-core.
import http from 'node:http';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';

const TYPES = { '.html': 'text/html', '.mjs': 'text/javascript', '.js': 'text/javascript', '.json': 'application/json',
  '.wasm': 'application/wasm', '.onnx': 'application/octet-stream', '.safetensors': 'application/octet-stream' };

export function serve(root) {
  const server = http.createServer(async (req, res) => {
    const rel = decodeURIComponent(new URL(req.url, 'http://x').pathname).replace(/^\/+/, '') || 'index.html';
    const file = path.resolve(root, rel);
    if (!file.startsWith(path.resolve(root))) { res.writeHead(403).end(); return; }
    try {
      if (!(await stat(file)).isFile()) throw new Error('not a file');
      res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream' });
      res.end(await readFile(file));
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const dir = args[0];
const backend = opt('--backend', 'wasm');
const timeout = Number(opt('--timeout', '300')) * 1000;
const server = await serve(dir);
const origin = `http://127.0.0.1:${server.address().port}`;
const flags = ['--no-sandbox', '--headless=new', '--disable-dev-shm-usage'];
if (backend !== 'wasm') flags.push('--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-angle=swiftshader', '--use-webgpu-adapter=swiftshader');
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: flags });
const refused = [];
const errors = [];
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 1000 } });
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(origin) || url.startsWith('blob:') || url.startsWith('data:')) return route.continue();
    refused.push(url);
    return route.abort();
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${origin}/index.html?autorun=1${backend === 'auto' ? '' : `&backend=${backend}`}`);
  await page.waitForFunction(() => window.onnxforgeResult || window.onnxforgeError, null, { timeout, polling: 200 });
  const result = await page.evaluate(() => window.onnxforgeResult || { error: window.onnxforgeError });
  const shown = await page.evaluate(() => ({ backend: document.getElementById('backend').textContent,
    accuracy: document.getElementById('acc').textContent, step: document.getElementById('step').textContent,
    epoch: document.getElementById('epoch').textContent }));
  for (const [flag, call] of [['--save-weights', 'exportWeights()'], ['--save-model', 'trainedModel()']]) {
    const file = opt(flag, null);
    if (file && result.weights) {
      const bytes = await page.evaluate(`(async () => Array.from(await window.onnxforgeTrainer.${call}))()`);
      await writeFile(file, Buffer.from(bytes));
    }
  }
  const shot = opt('--screenshot', null);
  if (shot) await page.screenshot({ path: shot, fullPage: true });
  process.stdout.write(JSON.stringify({ ...result, shown, refused, page_errors: errors }) + '\n');
} finally {
  await browser.close();
  server.close();
}
