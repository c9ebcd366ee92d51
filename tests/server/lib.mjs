// Shared helpers for the piquant-server tests (node, no packages): start a server on a free
// loopback port and always stop it, checks that count failures, SSE parsing, PEFT adapters.
// Every test script: node test_x.mjs PATH/TO/piquant-server [BUILD_DIR]; exit 0 pass, 1 fail,
// 77 skipped (ctest SKIP_RETURN_CODE).
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

export const SERVER = process.argv[2];
export const BUILD_DIR = process.argv[3] || os.tmpdir();
const servers = new Set();
let failures = 0;

function killAll() {
  for (const s of servers) {
    try { s.proc.kill('SIGKILL'); } catch (e) { /* already gone */ }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { killAll(); process.exit(1); });
process.on('uncaughtException', (e) => { console.error('FAIL: uncaught', e); killAll(); process.exit(1); });
process.on('unhandledRejection', (e) => { console.error('FAIL: unhandled', e); killAll(); process.exit(1); });

/// The whole script fails (and every server is killed) after `seconds`.
export function deadline(seconds) {
  const t = setTimeout(() => {
    console.error(`FAIL: the test did not finish within ${seconds} s`);
    killAll();
    process.exit(1);
  }, seconds * 1000);
  t.unref();
}

export function check(cond, what, detail) {
  if (cond) {
    console.log(`ok   ${what}`);
  } else {
    failures++;
    console.log(`FAIL ${what}${detail !== undefined ? ': ' + (typeof detail === 'string' ? detail : JSON.stringify(detail)) : ''}`);
  }
}

export function skip(why) {
  console.log(`SKIP: ${why}`);
  killAll();
  process.exit(77);
}

export function finish() {
  killAll();
  console.log(failures ? `${failures} check(s) failed` : 'all checks passed');
  process.exit(failures ? 1 : 0);
}

/// Starts piquant-server with `args` on 127.0.0.1, port 0 (a free port it prints).
export async function startServer(args = [], env = {}) {
  const proc = spawn(SERVER, ['--port', '0', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...env },
  });
  const s = { proc, log: '', exited: null };
  servers.add(s);
  proc.on('exit', (code, signal) => { s.exited = { code, signal }; });
  proc.stderr.on('data', (d) => { s.log += d.toString(); });
  const t0 = Date.now();
  while (!/listening on (http:\/\/[0-9.]+:\d+)/.test(s.log)) {
    if (s.exited) throw new Error(`piquant-server exited early: ${JSON.stringify(s.exited)}\n${s.log}`);
    if (Date.now() - t0 > 60000) throw new Error(`piquant-server did not start:\n${s.log}`);
    await sleep(50);
  }
  s.url = s.log.match(/listening on (http:\/\/[0-9.]+:\d+)/)[1];
  s.port = Number(s.url.split(':')[2]);
  /// Stops it with SIGTERM (SIGKILL after 10 s); returns its exit status.
  s.stop = async () => {
    if (!s.exited) proc.kill('SIGTERM');
    const t1 = Date.now();
    while (!s.exited && Date.now() - t1 < 10000) await sleep(50);
    if (!s.exited) proc.kill('SIGKILL');
    while (!s.exited) await sleep(20);
    servers.delete(s);
    return s.exited;
  };
  return s;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function post(url, body, headers = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
  return { status: res.status, headers: res.headers, text, json };
}

/// A streaming request: resolves to { events, text, finish, usage, times } where times are the
/// arrival times (ms) of the events carrying text. `onEvent` may return 'abort' to disconnect.
export async function stream(url, body, { headers = {}, onEvent } = {}) {
  const ctrl = new AbortController();
  const t0 = performance.now();
  const res = await fetch(url, {
    method: 'POST', signal: ctrl.signal,
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify({ ...body, stream: true }),
  });
  const out = { status: res.status, events: [], text: '', finish: null, usage: null, done: false,
                times: [], aborted: false, t0 };
  if (res.status !== 200) { out.error = await res.text(); return out; }
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (!line.startsWith('data: ')) continue;
        if (line === 'data: [DONE]') { out.done = true; continue; }
        const ev = JSON.parse(line.slice(6));
        out.events.push(ev);
        const c = ev.choices && ev.choices[0];
        const piece = c ? (c.delta ? c.delta.content : c.text) : undefined;
        if (piece) { out.text += piece; out.times.push(performance.now() - t0); }
        if (c && c.finish_reason) out.finish = c.finish_reason;
        if (ev.usage) out.usage = ev.usage;
        if (onEvent && onEvent(ev, out) === 'abort') {
          out.aborted = true;
          ctrl.abort();
          return out;
        }
      }
    }
  } catch (e) {
    if (!out.aborted) throw e;
  }
  return out;
}

export function curl(args) {
  const r = spawnSync('curl', ['-sS', '--max-time', '60', ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

export function tmpdir(name) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `piquant-${name}-`));
}

/// A seeded PEFT LoRA adapter for the demo model (Model::synthetic: dim 288, ffn 768, 6 layers)
/// written to `dir`: adapter_config.json + adapter_model.safetensors (f32).
export function writePeftAdapter(dir, seed, { r = 8, alpha = 16, dim = 288, ffn = 768, layers = 6 } = {}) {
  fs.mkdirSync(dir, { recursive: true });
  let state = BigInt(seed) * 6364136223846793005n + 1442695040888963407n;
  const rand = () => {  // LCG, uniform in [-1, 1)
    state = (state * 6364136223846793005n + 1442695040888963407n) & 0xffffffffffffffffn;
    return Number(state >> 11n) / 2 ** 53 * 2 - 1;
  };
  const mods = { q_proj: ['self_attn', dim, dim], v_proj: ['self_attn', dim, dim],
                 down_proj: ['mlp', ffn, dim] };
  const tensors = [];
  for (let l = 0; l < layers; l++) {
    for (const [m, [grp, inDim, outDim]] of Object.entries(mods)) {
      const base = `base_model.model.model.layers.${l}.${grp}.${m}`;
      tensors.push([`${base}.lora_A.weight`, [r, inDim], 0.3]);
      tensors.push([`${base}.lora_B.weight`, [outDim, r], 0.3]);
    }
  }
  const header = {};
  const chunks = [];
  let off = 0;
  for (const [name, shape, amp] of tensors) {
    const n = shape[0] * shape[1];
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = rand() * amp;
    header[name] = { dtype: 'F32', shape, data_offsets: [off, off + n * 4] };
    chunks.push(Buffer.from(data.buffer));
    off += n * 4;
  }
  let h = JSON.stringify(header);
  while ((h.length + 8) % 8) h += ' ';
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  fs.writeFileSync(path.join(dir, 'adapter_model.safetensors'), Buffer.concat([len, Buffer.from(h), ...chunks]));
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({
    peft_type: 'LORA', r, lora_alpha: alpha, use_rslora: false, fan_in_fan_out: false,
    bias: 'none', task_type: 'CAUSAL_LM', target_modules: Object.keys(mods) }));
  return dir;
}

/// VmRSS of a process in KiB.
export function rssKiB(pid) {
  const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/);
  return m ? Number(m[1]) : 0;
}

/// The official `openai` npm client (openai@4) for the tests that drive the server with it,
/// installed once per build tree into BUILD_DIR/npm-openai and shared by those tests. They may
/// run at once (ctest -j): the first takes a lock (a directory, made atomically; a lock whose
/// owner died or that is older than the install's time limit is broken), the others wait for it;
/// npm installs into a temporary folder that is renamed into place when complete, so no test ever
/// imports a half-installed package. Returns { OpenAI } or { error } when npm cannot install it
/// (no registry): the caller skips with that message.
export async function openaiClient() {
  const dir = path.join(BUILD_DIR, 'npm-openai');
  const entry = path.join(dir, 'node_modules', 'openai', 'index.mjs');
  const lock = `${dir}.lock`;
  const limitMs = 240000;
  const load = async () => ({ OpenAI: (await import(pathToFileURL(entry).href)).default });
  fs.mkdirSync(BUILD_DIR, { recursive: true });
  for (const t0 = Date.now(); !fs.existsSync(entry);) {
    try {
      fs.mkdirSync(lock);
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      let owner = 0, age = 0;
      try {
        owner = Number(fs.readFileSync(path.join(lock, 'pid'), 'utf8'));
        age = Date.now() - fs.statSync(lock).mtimeMs;
      } catch (e2) { /* being made or removed right now */ }
      let alive = true;
      try { if (owner) process.kill(owner, 0); } catch (e2) { alive = e2.code === 'EPERM'; }
      if ((owner && !alive) || age > limitMs + 30000) {
        fs.rmSync(lock, { recursive: true, force: true });  // stale: its owner is gone
      } else if (Date.now() - t0 > limitMs + 60000) {
        return { error: `another test held ${lock} for over ${(limitMs + 60000) / 1000} s` };
      } else {
        await sleep(200);
      }
      continue;
    }
    fs.writeFileSync(path.join(lock, 'pid'), String(process.pid));
    const tmp = fs.mkdtempSync(`${dir}.tmp-`);
    try {
      if (fs.existsSync(entry)) break;  // finished by the owner of the lock before ours
      const r = spawnSync('npm', ['install', '--prefix', tmp, '--no-audit', '--no-fund', '--silent',
                                  '--fetch-retries=1', '--fetch-timeout=60000', 'openai@4'],
                          { encoding: 'utf8', timeout: limitMs });
      if (r.status !== 0 || !fs.existsSync(path.join(tmp, 'node_modules', 'openai', 'index.mjs'))) {
        const why = (r.stderr || r.error || `exit status ${r.status}`).toString().slice(0, 300);
        return { error: `npm could not install the openai package (no registry?): ${why}` };
      }
      fs.rmSync(dir, { recursive: true, force: true });  // a leftover without the package
      fs.renameSync(tmp, dir);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
      fs.rmSync(lock, { recursive: true, force: true });
    }
  }
  return load();
}
