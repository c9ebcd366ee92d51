// A shared prompt prefix (a system prompt common to several requests) is evaluated once: four
// requests that arrive together with the same 150-token prefix and 10 tokens of their own cost
// 150 + 4 x 10 prompt tokens of evaluation on a fresh server (piquant_prompt_tokens_evaluated_total),
// the other three copy the prefix from the first slot (Context::fork), and each gets the same
// greedy tokens as on a one-slot server that serves the requests one at a time. Then the
// connection cap: past --threads-http connections at once, a request is refused at once with 503
// and Retry-After instead of waiting.
import { check, deadline, finish, post, sleep, startServer, stream } from './lib.mjs';

deadline(280);
const metric = async (srv, name) => Number((await (await fetch(`${srv.url}/metrics`)).text())
  .match(new RegExp(`^piquant_${name} (\\S+)$`, 'm'))[1]);

const prefix = [1];
for (let i = 1; i < 150; i++) prefix.push(20 + ((i * 37) % 200));
const req = (k) => ({ prompt: [...prefix, ...Array.from({ length: 10 }, (_, j) => 30 + 11 * k + j)],
                      max_tokens: 16, temperature: 0, ignore_eos: true });

const srv = await startServer(['-np', '4', '-t', '1', '-c', '512', '-v']);
const together = await Promise.all([0, 1, 2, 3].map((k) => post(`${srv.url}/v1/completions`, req(k))));
const evaluated = await metric(srv, 'prompt_tokens_evaluated_total');
const forked = await metric(srv, 'prompt_tokens_forked_total');
check(together.every((r) => r.status === 200 && r.json.usage.completion_tokens === 16), 'four concurrent requests',
      together.map((r) => r.text.slice(0, 200)));
check(evaluated === 150 + 4 * 10, `prompt tokens evaluated: ${evaluated} (the shared prefix once: 190)`, srv.log.slice(-2000));
check(forked === 3 * 150, `prompt tokens copied from another slot: ${forked} (3 x 150)`);
const cached = together.map((r) => r.json.usage.prompt_tokens_details.cached_tokens).sort((a, b) => a - b);
check(JSON.stringify(cached) === JSON.stringify([0, 150, 150, 150]), 'cached_tokens per request: 0, 150, 150, 150', cached);
await srv.stop();

// The same requests one at a time on a one-slot server: the same tokens.
const one = await startServer(['-np', '1', '-t', '1', '-c', '512']);
for (let k = 0; k < 4; k++) {
  const r = await post(`${one.url}/v1/completions`, req(k));
  check(r.status === 200 && r.json.choices[0].text === together[k].json.choices[0].text,
        `request ${k}: the forked prefix gives the tokens it gets alone`, [r.json && r.json.choices[0].text, together[k].json.choices[0].text]);
}
check(new Set(together.map((r) => r.json.choices[0].text)).size > 1, 'the four replies differ (the test can tell them apart)');
await one.stop();

// Connection cap: two HTTP threads, both held by slow streams; a third connection is refused.
const cap = await startServer(['-np', '2', '-t', '1', '-c', '512', '--threads-http', '2']);
const long = { prompt: [1, 2, 3], max_tokens: 400, temperature: 0, ignore_eos: true };
let started = 0;
const streams = [0, 1].map(() => stream(`${cap.url}/v1/completions`, long, {
  onEvent: (ev, out) => { if (out.text.length > 0 && !out.counted) { out.counted = true; started++; } return out.stop ? 'abort' : undefined; },
}));
const t0 = Date.now();
while (started < 2 && Date.now() - t0 < 60000) await sleep(20);
check(started === 2, 'two streams hold both HTTP threads');
const t1 = Date.now();
const refused = await fetch(`${cap.url}/health`).catch((e) => ({ status: 'error ' + e.message }));
const waited = Date.now() - t1;
check(refused.status === 503 && refused.headers.get('retry-after') === '1' && waited < 3000,
      `a third connection gets 503 with Retry-After at once (${waited} ms)`, refused.status);
if (refused.status === 503) {
  const body = await refused.json();
  check(body.error && body.error.code === 503 && /too many connections/.test(body.error.message), '503 body in OpenAI shape', body);
}
const all = await Promise.all(streams);
check(all.every((s) => s.finish === 'length' && s.done), 'the held streams finish normally');
await sleep(200);
const after = await fetch(`${cap.url}/health`);
check(after.status === 200, 'with the streams done, connections are served again');
check(await metric(cap, 'connections_refused_total') >= 1, 'refusals counted in /metrics');
finish();
