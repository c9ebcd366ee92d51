#pragma once
// The chat page served at / : one static HTML page with its script inline (no CDN, no build
// step). It talks to /v1/chat/completions with stream: true and shows the reply as it comes.
namespace piquant::server {

inline const char* const kChatPage = R"PAGE(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>piquant chat</title>
<style>
body { font: 15px/1.4 system-ui, sans-serif; margin: 0; display: flex; height: 100vh; }
#side { width: 260px; padding: 12px; background: #f3f3f0; border-right: 1px solid #ddd; }
#side label { display: block; margin: 10px 0 4px; font-weight: 600; }
#side textarea, #side input, #side select { width: 100%; box-sizing: border-box; }
#main { flex: 1; display: flex; flex-direction: column; }
#log { flex: 1; overflow-y: auto; padding: 12px; }
.msg { margin: 8px 0; padding: 8px 10px; border-radius: 8px; white-space: pre-wrap; max-width: 80%; }
.user { background: #dbeafe; margin-left: auto; }
.assistant { background: #eee; }
.error { background: #fde2e2; }
form { display: flex; gap: 8px; padding: 12px; border-top: 1px solid #ddd; }
#input { flex: 1; }
</style>
</head>
<body>
<div id="side">
  <b>piquant</b> <span id="model"></span>
  <label for="system">System prompt</label>
  <textarea id="system" rows="5">You are a helpful assistant.</textarea>
  <label for="temp">Temperature</label>
  <input id="temp" type="number" min="0" max="2" step="0.1" value="0.7">
  <label for="maxtok">Max tokens</label>
  <input id="maxtok" type="number" min="1" value="256">
  <label for="adapter">LoRA adapter</label>
  <select id="adapter"><option value="">server default</option><option value="none">none</option></select>
  <label for="key">API key</label>
  <input id="key" type="password" placeholder="if the server needs one">
  <p><button id="clear" type="button">New chat</button></p>
</div>
<div id="main">
  <div id="log"></div>
  <form id="form">
    <input id="input" autocomplete="off" placeholder="Message">
    <button id="send" type="submit">Send</button>
  </form>
</div>
<script>
const $ = (id) => document.getElementById(id);
let history = [];
$('key').value = localStorage.getItem('piquant-key') || '';
$('key').onchange = () => { localStorage.setItem('piquant-key', $('key').value); init(); };
function headers() {
  const h = { 'Content-Type': 'application/json' };
  if ($('key').value) h['Authorization'] = 'Bearer ' + $('key').value;
  return h;
}
async function init() {
  try {
    const m = await (await fetch('/v1/models', { headers: headers() })).json();
    if (m.data) $('model').textContent = m.data[0].id;
    const list = await (await fetch('/lora-adapters', { headers: headers() })).json();
    const sel = $('adapter');
    while (sel.options.length > 2) sel.remove(2);
    if (Array.isArray(list)) for (const a of list) {
      const o = document.createElement('option');
      o.value = a.id; o.textContent = a.id + ': ' + a.path.split('/').pop();
      sel.appendChild(o);
    }
  } catch (e) { /* shown on the first message */ }
}
function add(role, text) {
  const d = document.createElement('div');
  d.className = 'msg ' + role;
  d.textContent = text;
  $('log').appendChild(d);
  $('log').scrollTop = $('log').scrollHeight;
  return d;
}
$('clear').onclick = () => { history = []; $('log').innerHTML = ''; };
$('form').onsubmit = async (ev) => {
  ev.preventDefault();
  const text = $('input').value;
  if (!text) return;
  $('input').value = '';
  $('send').disabled = true;
  add('user', text);
  history.push({ role: 'user', content: text });
  const out = add('assistant', '');
  const messages = [];
  if ($('system').value) messages.push({ role: 'system', content: $('system').value });
  const body = { messages: messages.concat(history), stream: true,
                 temperature: Number($('temp').value), max_tokens: Number($('maxtok').value) };
  const a = $('adapter').value;
  if (a === 'none') body.lora = [];
  else if (a !== '') body.lora = [{ id: Number(a), scale: 1.0 }];
  let reply = '';
  try {
    const res = await fetch('/v1/chat/completions',
                            { method: 'POST', headers: headers(), body: JSON.stringify(body) });
    if (!res.ok) throw new Error((await res.json()).error.message);
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 2);
        if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
        const ev = JSON.parse(line.slice(6));
        if (ev.error) throw new Error(ev.error.message);
        const c = ev.choices && ev.choices[0];
        if (c && c.delta && c.delta.content) {
          reply += c.delta.content;
          out.textContent = reply;
          $('log').scrollTop = $('log').scrollHeight;
        }
        if (c && c.finish_reason) out.dataset.finish = c.finish_reason;
      }
    }
    history.push({ role: 'assistant', content: reply });
    out.dataset.done = '1';
  } catch (e) {
    out.className = 'msg error';
    out.textContent = 'error: ' + e.message;
    history.pop();
  }
  $('send').disabled = false;
};
init();
</script>
</body>
</html>
)PAGE";

}  // namespace piquant::server
