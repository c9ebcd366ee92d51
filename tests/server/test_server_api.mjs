// piquant-server against curl and plain HTTP: chat and completions (plain and streaming), the
// other endpoints, and every kind of bad input with its OpenAI-shaped error and status.
import { spawnSync } from 'node:child_process';
import { SERVER, check, curl, deadline, finish, post, startServer, stream, sleep } from './lib.mjs';

deadline(240);
{
  const run = (args) => spawnSync(SERVER, args, { encoding: 'utf8', timeout: 30000 });
  const v = run(['--version']);
  check(v.status === 0 && /^piquant-server \(piquant \d+\.\d+\.\d+\)/.test(v.stdout), '--version', v.stdout);
  const h = run(['--help']);
  check(h.status === 0 && ['-np, --parallel', '--lora FILE', '--api-key', '--lora-init-without-apply',
                           '-ctk', '--chat-template', '--timeout'].every((f) => h.stdout.includes(f)), '--help lists the flags');
  const b = run(['--parallel', '0']);
  check(b.status === 1 && /piquant-server: error: --parallel must be at least 1/.test(b.stderr), 'bad flag value: one error line', b.stderr);
  const u = run(['--bogus']);
  check(u.status === 1 && /unknown option '--bogus'/.test(u.stderr), 'unknown flag', u.stderr);
  const m = run(['-m', '/nonexistent/model.gguf']);
  check(m.status === 1 && /piquant-server: error: .*nonexistent/.test(m.stderr), 'missing model file', m.stderr);
}
const srv = await startServer(['-np', '2', '-t', '1', '-c', '256', '--max-body', '20000']);
const U = srv.url;
const isError = (r, status) =>
  r.status === status && r.json && r.json.error && typeof r.json.error.message === 'string' &&
  typeof r.json.error.type === 'string' && r.json.error.code === status;

// --- curl, plain and streaming ---
{
  const r = curl([`${U}/v1/chat/completions`, '-H', 'Content-Type: application/json', '-d',
                  JSON.stringify({ messages: [{ role: 'user', content: 'Hello' }], max_tokens: 8, temperature: 0 })]);
  const j = JSON.parse(r.out || '{}');
  check(r.code === 0 && j.object === 'chat.completion', 'curl chat completion', r.out + r.err);
  check(j.choices && j.choices[0].message.role === 'assistant' &&
        typeof j.choices[0].message.content === 'string', 'chat reply has an assistant message');
  check(j.usage && j.usage.completion_tokens === 8 && j.usage.prompt_tokens > 0 &&
        j.usage.total_tokens === j.usage.prompt_tokens + 8, 'usage counts', j.usage);
  check(j.choices && j.choices[0].finish_reason === 'length', 'finish_reason length at max_tokens');

  const s = curl(['-N', `${U}/v1/chat/completions`, '-d',
                  JSON.stringify({ messages: [{ role: 'user', content: 'Hello' }], max_tokens: 8, temperature: 0, stream: true })]);
  const lines = s.out.split('\n\n').filter((l) => l.startsWith('data: '));
  check(lines.length >= 3 && lines[lines.length - 1] === 'data: [DONE]', 'curl stream ends with data: [DONE]', s.out);
  const evs = lines.slice(0, -1).map((l) => JSON.parse(l.slice(6)));
  const text = evs.map((e) => e.choices[0].delta.content || '').join('');
  check(evs.every((e) => e.object === 'chat.completion.chunk'), 'chunks are chat.completion.chunk');
  check(text === j.choices[0].message.content, 'streamed text equals the plain reply (greedy)', [text, j.choices[0].message.content]);
  check(evs[evs.length - 1].choices[0].finish_reason === 'length', 'last chunk has the finish_reason');

  const c = curl([`${U}/v1/completions`, '-d', JSON.stringify({ prompt: 'Once upon a time', max_tokens: 6, temperature: 0 })]);
  const cj = JSON.parse(c.out || '{}');
  check(cj.object === 'text_completion' && typeof cj.choices[0].text === 'string' &&
        cj.usage.completion_tokens === 6, 'curl completion', c.out);
}

// --- stop strings: the text ends before the stop string, finish_reason stop ---
{
  const base = await post(`${U}/v1/completions`, { prompt: 'Once upon a time', max_tokens: 24, temperature: 0 });
  const t = base.json.choices[0].text;
  // A stop string from the middle of the greedy text.
  const stopAt = Math.floor(t.length / 2);
  const stopStr = t.slice(stopAt, stopAt + 2);
  const cut = t.indexOf(stopStr);
  const r = await post(`${U}/v1/completions`, { prompt: 'Once upon a time', max_tokens: 24, temperature: 0, stop: [stopStr] });
  check(r.json.choices[0].text === t.slice(0, cut) && r.json.choices[0].finish_reason === 'stop',
        'stop string cuts the text before it, finish_reason stop', [t, stopStr, r.json.choices[0]]);
  const s = await stream(`${U}/v1/completions`, { prompt: 'Once upon a time', max_tokens: 24, temperature: 0, stop: stopStr });
  check(s.text === t.slice(0, cut) && s.finish === 'stop', 'streamed stop string never shows', [s.text, t.slice(0, cut)]);
}

// --- the other endpoints ---
{
  const m = await (await fetch(`${U}/v1/models`)).json();
  check(m.object === 'list' && m.data[0].id === 'piquant-demo', '/v1/models', m);
  const h = await (await fetch(`${U}/health`)).json();
  check(h.status === 'ok' && h.slots_idle === 2, '/health', h);
  const text = 'Hello, world! ünïcode';
  const t = await post(`${U}/tokenize`, { content: text });
  check(Array.isArray(t.json.tokens) && t.json.tokens.length > 0, '/tokenize', t.text);
  const d = await post(`${U}/detokenize`, { tokens: t.json.tokens });
  check(d.json.content === text, 'tokenize / detokenize round trip', d.text);
  const tp = await post(`${U}/tokenize`, { content: text, with_pieces: true });
  check(tp.json.tokens.every((x) => typeof x.id === 'number' && 'piece' in x), '/tokenize with_pieces');
  const met = await (await fetch(`${U}/metrics`)).text();
  check(/piquant_requests_total \d+/.test(met) && /piquant_tokens_generated_total \d+/.test(met) &&
        /piquant_slots_busy 0/.test(met) && /piquant_queue_length 0/.test(met), '/metrics (Prometheus text)', met);
  const la = await (await fetch(`${U}/lora-adapters`)).json();
  check(Array.isArray(la) && la.length === 0, 'GET /lora-adapters (none loaded)', la);
  const page = await fetch(`${U}/`);
  check(page.status === 200 && (await page.text()).includes('<title>piquant chat</title>'), 'chat page at /');
  check(!page.headers.get('access-control-allow-origin'), 'no CORS header without --cors-origin');
}

// --- prompt cache: the same prompt again reuses the slot's cache ---
{
  const body = { prompt: 'The cache keeps this prefix around', max_tokens: 4, temperature: 0 };
  const a = await post(`${U}/v1/completions`, body);
  const b = await post(`${U}/v1/completions`, body);
  check(b.json.usage.prompt_tokens_details.cached_tokens === a.json.usage.prompt_tokens - 1 &&
        b.json.choices[0].text === a.json.choices[0].text, 'repeated prompt reuses the cache, same text',
        [a.json.usage, b.json.usage]);
}

// --- a chat's next turn evaluates only the new message ---
{
  const m1 = [{ role: 'system', content: 'You are a robot.' }, { role: 'user', content: 'Turn left.' }];
  const a = await post(`${U}/v1/chat/completions`, { messages: m1, max_tokens: 6, temperature: 0 });
  const m2 = [...m1, { role: 'assistant', content: a.json.choices[0].message.content },
              { role: 'user', content: 'Now right.' }];
  const b = await post(`${U}/v1/chat/completions`, { messages: m2, max_tokens: 6, temperature: 0 });
  check(b.json.usage.prompt_tokens_details.cached_tokens >= a.json.usage.prompt_tokens,
        'the next chat turn reuses the previous turn from the cache', [a.json.usage, b.json.usage]);
}

// --- a client that disconnects mid-stream frees its slot at once ---
{
  const gen = async () => Number((await (await fetch(`${U}/metrics`)).text()).match(/^piquant_tokens_generated_total (\d+)$/m)[1]);
  const r = await stream(`${U}/v1/completions`, { prompt: 'Going on and on', max_tokens: 200, ignore_eos: true },
                         { onEvent: (ev, out) => (out.events.length >= 3 ? 'abort' : undefined) });
  check(r.aborted, 'the client disconnected after 3 events');
  let h = null;
  const t0 = Date.now();
  for (let i = 0; i < 100; i++) {
    h = await (await fetch(`${U}/health`)).json();
    if (h.slots_idle === 2) break;
    await sleep(10);
  }
  const g1 = await gen();
  await sleep(300);
  const g2 = await gen();
  check(h.slots_idle === 2 && g2 === g1, `its slot is free ${Date.now() - t0} ms later and generation stopped`, [h, g1, g2]);
  const met = await (await fetch(`${U}/metrics`)).text();
  check(/^piquant_requests_cancelled_total 1$/m.test(met), 'counted as cancelled');
}

// --- bad input: each an OpenAI-shaped error with the right status ---
const chat = `${U}/v1/chat/completions`;
const okMsgs = [{ role: 'user', content: 'hi' }];
const bad = [
  ['malformed JSON', chat, '{"messages": [', 400, /not valid JSON/],
  ['body not an object', chat, '[1,2]', 400, /JSON object/],
  ['messages of the wrong type', chat, { messages: 'hi' }, 400, /'messages' must be an array/],
  ['empty messages', chat, { messages: [] }, 400, /must not be empty/],
  ['message without a role', chat, { messages: [{ content: 'x' }] }, 400, /role/],
  ['unknown role', chat, { messages: [{ role: 'wizard', content: 'x' }] }, 400, /role 'wizard'/],
  ['temperature a string', chat, { messages: okMsgs, temperature: 'hot' }, 400, /'temperature' must be a number/],
  ['max_tokens a string', chat, { messages: okMsgs, max_tokens: '5' }, 400, /'max_tokens' must be an integer/],
  ['negative max_tokens', chat, { messages: okMsgs, max_tokens: -5 }, 400, /'max_tokens' must be between 1 and/],
  ['zero max_tokens', chat, { messages: okMsgs, max_tokens: 0 }, 400, /between 1 and/],
  ['huge max_tokens', chat, { messages: okMsgs, max_tokens: 1e12 }, 400, /between 1 and/],
  ['stream not a bool', chat, { messages: okMsgs, stream: 'yes' }, 400, /'stream' must be true or false/],
  ['stop of the wrong type', chat, { messages: okMsgs, stop: 5 }, 400, /'stop' must be a string/],
  ['unknown adapter id', chat, { messages: okMsgs, lora: [{ id: 3, scale: 1 }] }, 400, /unknown LoRA adapter id 3/],
  ['lora not an array', chat, { messages: okMsgs, lora: 'x' }, 400, /'lora' must be an array/],
  ['n other than 1', chat, { messages: okMsgs, n: 2 }, 400, /'n' must be 1/],
  ['prompt over the context', `${U}/v1/completions`, { prompt: 'x'.repeat(2000) }, 400, /leaves no room.*context of 256/],
  ['prompt of the wrong type', `${U}/v1/completions`, { prompt: { a: 1 } }, 400, /'prompt' must be a string/],
  ['prompt token out of range', `${U}/v1/completions`, { prompt: [1, 99999] }, 400, /outside the vocabulary/],
  ['missing prompt', `${U}/v1/completions`, { max_tokens: 3 }, 400, /'prompt' is required/],
  ['detokenize a bad id', `${U}/detokenize`, { tokens: [-1] }, 400, /outside the vocabulary/],
  ['tokenize without content', `${U}/tokenize`, { text: 'x' }, 400, /'content' must be a string/],
  ['over-size body', chat, { messages: [{ role: 'user', content: 'x'.repeat(30000) }] }, 413, /too large/],
];
for (const [what, url, body, status, re] of bad) {
  const r = await post(url, body);
  check(isError(r, status) && re.test(r.json.error.message), `${what} -> ${status}`, r.text.slice(0, 300));
}
{
  const r = await fetch(`${U}/v1/nothing-here`);
  const j = await r.json().catch(() => null);
  check(r.status === 404 && j && j.error && /unknown path/.test(j.error.message), 'unknown path -> 404', j);
  const g = await fetch(`${U}/v1/chat/completions`);  // GET on a POST route
  check(g.status === 404 || g.status === 405, 'wrong method is refused', g.status);
}
// The server still answers after all that.
{
  const r = await post(chat, { messages: okMsgs, max_tokens: 2 });
  check(r.status === 200, 'still serving after bad requests');
  const h = await (await fetch(`${U}/health`)).json();
  check(h.slots_idle === 2, 'every slot free', h);
}
const st = await srv.stop();
check(st.code === 0, 'SIGTERM stops the server with status 0', st);

// --- API key: every endpoint but /health needs it ---
{
  const key = 'sk-test-0123456789';
  const s = await startServer(['-np', '1', '-t', '1', '-c', '128'], { PIQUANT_API_KEY: key });
  const none = await post(`${s.url}/v1/chat/completions`, { messages: okMsgs, max_tokens: 2 });
  check(isError(none, 401), 'missing API key -> 401', none.text);
  const wrong = await post(`${s.url}/v1/chat/completions`, { messages: okMsgs, max_tokens: 2 },
                           { Authorization: 'Bearer sk-test-0123456788' });
  check(isError(wrong, 401), 'wrong API key -> 401', wrong.text);
  const shortKey = await post(`${s.url}/tokenize`, { content: 'a' }, { Authorization: 'Bearer sk' });
  check(isError(shortKey, 401), 'prefix of the key -> 401');
  const right = await post(`${s.url}/v1/chat/completions`, { messages: okMsgs, max_tokens: 2 },
                           { Authorization: `Bearer ${key}` });
  check(right.status === 200, 'right API key -> 200', right.text);
  const models = await fetch(`${s.url}/v1/models`);
  check(models.status === 401, '/v1/models needs the key too');
  const metrics = await fetch(`${s.url}/metrics`);
  check(metrics.status === 401, '/metrics needs the key too');
  const health = await fetch(`${s.url}/health`);
  check(health.status === 200, '/health needs no key');
  await s.stop();
}

// --- overload: one slot, no queue: a second request while one runs gets 503 + Retry-After ---
{
  const s = await startServer(['-np', '1', '-t', '1', '-c', '1024', '--max-queue', '0', '--cors-origin', 'http://example.test']);
  const long = stream(`${s.url}/v1/completions`, { prompt: 'a', max_tokens: 1000, ignore_eos: true, temperature: 0 });
  let busy = false;
  for (let i = 0; i < 100 && !busy; i++) {
    busy = (await (await fetch(`${s.url}/health`)).json()).slots_processing === 1;
    if (!busy) await sleep(20);
  }
  const r = await post(`${s.url}/v1/completions`, { prompt: 'b', max_tokens: 2 });
  check(isError(r, 503) && r.headers.get('retry-after') === '1', 'overloaded -> 503 with Retry-After', r.text);
  check(r.headers.get('access-control-allow-origin') === 'http://example.test', '--cors-origin sends CORS headers');
  const l = await long;
  check(l.finish === 'length' && l.done, 'the running request was not disturbed', { status: l.status, finish: l.finish, error: l.error, n: l.events.length });
  await s.stop();
}
finish();
