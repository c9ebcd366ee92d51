// The chat page at / driven in headless Debian chromium over the DevTools protocol (node's
// WebSocket, no packages): type a message, press Send, the streamed reply appears; a screenshot
// is saved in the build tree (server-chat-page.png) for the record.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BUILD_DIR, check, deadline, finish, skip, sleep, startServer, tmpdir } from './lib.mjs';

deadline(240);
if (typeof WebSocket === 'undefined') skip('this node has no WebSocket (node >= 20 with --experimental-websocket, or >= 22)');
const chromiumPath = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p));
if (!chromiumPath) skip('chromium is not installed (Debian package chromium)');

const srv = await startServer(['-np', '2', '-t', '1', '-c', '512']);
const profile = tmpdir('chromium');
const chrome = spawn(chromiumPath, ['--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run',
                                    '--remote-debugging-port=0', `--user-data-dir=${profile}`,
                                    '--window-size=1000,700', 'about:blank'],
                     { stdio: ['ignore', 'ignore', 'pipe'] });
let chromeLog = '';
chrome.stderr.on('data', (d) => { chromeLog += d.toString(); });
const killChrome = () => { try { chrome.kill('SIGKILL'); } catch (e) { /* gone */ } };
process.on('exit', () => {
  killChrome();
  // chromium's helper processes may still be writing the profile as it dies: retry, never throw.
  try { fs.rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 }); } catch (e) { /* left in /tmp */ }
});

let wsUrl = null;
for (let i = 0; i < 300 && !wsUrl; i++) {
  const m = chromeLog.match(/DevTools listening on (ws:\/\/[^\s]+)/);
  if (m) wsUrl = m[1];
  else await sleep(100);
}
if (!wsUrl) { killChrome(); skip(`chromium did not start headless: ${chromeLog.slice(0, 400)}`); }
const port = new URL(wsUrl).port;
const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
const pageTarget = targets.find((t) => t.type === 'page');
const ws = new WebSocket(pageTarget.webSocketDebuggerUrl);
await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
let seq = 0;
const pending = new Map();
ws.onmessage = (ev) => {
  const msg = JSON.parse(ev.data);
  if (msg.id && pending.has(msg.id)) { pending.get(msg.id)(msg); pending.delete(msg.id); }
};
const cdp = (method, params = {}) => new Promise((resolve) => {
  const id = ++seq;
  pending.set(id, resolve);
  ws.send(JSON.stringify({ id, method, params }));
});
const evaluate = async (expr) => {
  const r = await cdp('Runtime.evaluate', { expression: expr, awaitPromise: true, returnByValue: true });
  return r.result && r.result.result ? r.result.result.value : undefined;
};

await cdp('Page.enable');
await cdp('Page.navigate', { url: `${srv.url}/` });
for (let i = 0; i < 100 && (await evaluate('document.readyState')) !== 'complete'; i++) await sleep(50);
check((await evaluate('document.title')) === 'piquant chat', 'the page loads in chromium');
for (let i = 0; i < 100 && !(await evaluate("document.getElementById('model').textContent")); i++) await sleep(50);
check((await evaluate("document.getElementById('model').textContent")) === 'piquant-demo', 'the page shows the model name');

// Type the message key by key into the input, set the temperature, press Send.
await evaluate("document.getElementById('temp').value = '0'; document.getElementById('maxtok').value = '40'; document.getElementById('input').focus()");
await cdp('Input.insertText', { text: 'Hello from chromium' });
await evaluate("document.getElementById('send').click()");
// Watch the reply grow: more than one distinct length means it streamed.
const lengths = new Set();
let done = false;
for (let i = 0; i < 400 && !done; i++) {
  const st = await evaluate("(() => { const m = document.querySelectorAll('.msg'); const last = m[m.length - 1]; return last ? { cls: last.className, len: last.textContent.length, done: last.dataset.done === '1', text: last.textContent } : null; })()");
  if (st && st.cls.includes('assistant')) { lengths.add(st.len); done = st.done; }
  if (st && st.cls.includes('error')) { check(false, 'the reply has no error', st.text); break; }
  if (!done) await sleep(10);
}
const userMsg = await evaluate("document.querySelector('.msg.user') && document.querySelector('.msg.user').textContent");
const reply = await evaluate("document.querySelector('.msg.assistant') && document.querySelector('.msg.assistant').textContent");
check(userMsg === 'Hello from chromium', 'the typed message is shown', userMsg);
check(done && reply && reply.length > 0, 'the streamed reply appears and completes', reply);
check(lengths.size >= 2, `the reply grew while streaming (lengths seen: ${[...lengths].slice(0, 8).join(',')})`);
// The same request from the API: the page sent the system prompt, temperature 0 and 40 tokens.
const api = await (await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({ messages: [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: 'Hello from chromium' }],
                         temperature: 0, max_tokens: 40 }) })).json();
check(api.choices[0].message.content === reply, 'the page shows the same text the API gives', [reply, api.choices[0].message.content]);

const shot = await cdp('Page.captureScreenshot', { format: 'png' });
const file = path.join(BUILD_DIR, 'server-chat-page.png');
fs.writeFileSync(file, Buffer.from(shot.result.data, 'base64'));
check(fs.statSync(file).size > 1000, `screenshot saved: ${file}`);
ws.close();
killChrome();
finish();
