// Continuous batching and per-request LoRA are real: with 4 slots, 4 concurrent greedy streams
// give each the tokens it gets alone; requests with two different adapters in the same batched
// passes give what each adapter gives alone (and differ from each other and from the base).
import path from 'node:path';
import { check, deadline, finish, post, startServer, stream, tmpdir, writePeftAdapter } from './lib.mjs';

deadline(280);
const dir = tmpdir('server-lora');
const a0 = writePeftAdapter(path.join(dir, 'a0'), 11);
const a1 = writePeftAdapter(path.join(dir, 'a1'), 22);
const srv = await startServer(['-np', '4', '-t', '1', '-c', '512', '--lora', a0, '--lora', a1,
                               '--lora-init-without-apply', '-v']);
const U = `${srv.url}/v1/completions`;
// Prompt ids avoid the demo tokenizer's quirks; max_tokens long enough to overlap in time.
const req = (i, extra = {}) => ({ prompt: [1, 30 + 7 * i, 40 + i, 50 + 3 * i], max_tokens: 48,
                                  temperature: 0, ignore_eos: true, ...extra });
const ids = async (body) => {  // the generated text (greedy ids map 1:1 onto it here)
  const r = await stream(U, body);
  return { text: r.text, finish: r.finish, n: r.usage && r.usage.completion_tokens };
};

const adapters = await (await fetch(`${srv.url}/lora-adapters`)).json();
check(adapters.length === 2 && adapters.every((a) => a.scale === 0), 'two adapters loaded with scale 0', adapters);

// Alone: one request at a time.
const alone = [];
for (let i = 0; i < 4; i++) alone.push(await ids(req(i)));
// Together: four streams at once.
const stepsBefore = Number((await (await fetch(`${srv.url}/metrics`)).text()).match(/piquant_decode_steps_total (\d+)/)[1]);
const together = await Promise.all([0, 1, 2, 3].map((i) => ids(req(i))));
const stepsAfter = Number((await (await fetch(`${srv.url}/metrics`)).text()).match(/piquant_decode_steps_total (\d+)/)[1]);
for (let i = 0; i < 4; i++) {
  check(together[i].n === 48 && together[i].text === alone[i].text,
        `request ${i}: 4 concurrent streams give the tokens it gets alone`, [alone[i], together[i]]);
}
check(new Set(alone.map((x) => x.text)).size > 1, 'the four requests differ (the test can tell them apart)', alone);
// Batched: far fewer decode passes than 4 x 47 (one pass serves every active slot).
check(stepsAfter - stepsBefore < 2 * 47, `decode passes for 4 x 48 tokens: ${stepsAfter - stepsBefore} (batched)`);

// Per-request LoRA: adapter 0 / adapter 1 / none, alone and then side by side.
const withA = (i, id) => req(i, { lora: id === null ? [] : [{ id, scale: 1.0 }] });
const l0 = await ids(withA(0, 0));
const l1 = await ids(withA(0, 1));
const base = await ids(withA(0, null));
check(base.text === alone[0].text, 'lora: [] is the base model');
check(l0.text !== base.text && l1.text !== base.text && l0.text !== l1.text,
      'the adapters change the tokens (and differently)', [base.text, l0.text, l1.text]);
const mixed = await Promise.all([ids(withA(0, 0)), ids(withA(0, 1)), ids(withA(0, null)), ids(withA(0, 0))]);
check(mixed[0].text === l0.text, 'adapter 0 in a mixed batch == adapter 0 alone', [mixed[0].text, l0.text]);
check(mixed[1].text === l1.text, 'adapter 1 in a mixed batch == adapter 1 alone', [mixed[1].text, l1.text]);
check(mixed[2].text === base.text, 'no adapter in a mixed batch == base alone', [mixed[2].text, base.text]);
check(mixed[3].text === l0.text, 'a second adapter-0 request in the same batch == alone');
// A scale other than 1, and the default scales set through POST /lora-adapters.
const half = await ids(req(0, { lora: [{ id: 1, scale: 0.5 }] }));
check(half.text !== l1.text && half.text !== base.text, 'scale 0.5 is honoured (neither base nor scale 1)', [half.text, l1.text, base.text]);
const set = await post(`${srv.url}/lora-adapters`, [{ id: 1, scale: 1.0 }]);
check(set.status === 200, 'POST /lora-adapters');
const dflt = await ids(req(0));
check(dflt.text === l1.text, 'the default scales apply to requests without "lora"', [dflt.text, l1.text]);
const h = await (await fetch(`${srv.url}/health`)).json();
check(h.slots_idle === 4, 'every slot free at the end', h);
await srv.stop();

// Prompts that arrive while another request generates: with --prefill-chunk 8 a pass holds at
// most 8 rows, so the three prompts (29, 19, 11 tokens) are read in chunks, several slots' chunks
// sharing a pass (the shortest first) beside the running stream's decode rows. Every request,
// the running one included, gets the tokens it gets alone on a one-slot server.
const metricOf = async (s, name) => Number((await (await fetch(`${s.url}/metrics`)).text())
  .match(new RegExp(`^piquant_${name} (\\S+)$`, 'm'))[1]);
const running = { prompt: [1, 77, 5, 12], max_tokens: 160, temperature: 0, ignore_eos: true };
const late = [29, 19, 11].map((n, k) => ({
  prompt: [1, ...Array.from({ length: n - 1 }, (_, j) => 30 + ((j * 7 + k * 11) % 60))],
  max_tokens: 24, temperature: 0, ignore_eos: true }));
const single = await startServer(['-np', '1', '-t', '1', '-c', '512', '--prefill-chunk', '8']);
const aloneRun = await stream(`${single.url}/v1/completions`, running);
const aloneLate = [];
for (const r of late) aloneLate.push(await stream(`${single.url}/v1/completions`, r));
await single.stop();
const four = await startServer(['-np', '4', '-t', '1', '-c', '512', '--prefill-chunk', '8']);
const U4 = `${four.url}/v1/completions`;
let go;
const started = new Promise((r) => { go = r; });
const first = stream(U4, running, { onEvent: (ev, out) => { if (out.times.length >= 4) go(); } });
await started;  // the first request is generating: the others' prompts join its passes
const others = await Promise.all(late.map((r) => stream(U4, r)));
const run = await first;
check(run.text === aloneRun.text && run.usage.completion_tokens === 160,
      'the running stream gets the tokens it gets alone while three prompts are read', [run.text, aloneRun.text]);
for (let k = 0; k < 3; k++) {
  check(others[k].text === aloneLate[k].text && others[k].usage.completion_tokens === 24,
        `late request ${k} (${late[k].prompt.length}-token prompt, chunked) gets the tokens it gets alone`,
        [others[k].text, aloneLate[k].text]);
}
const lastFirst = Math.max(...others.map((o) => o.t0 + o.times[0]));
check(run.t0 + run.times[run.times.length - 1] > lastFirst,
      'the late prompts were read while the first request was still generating');
// (Each prompt's first token, shared with the running request, is copied from its slot.)
const evaluated = await metricOf(four, 'prompt_tokens_evaluated_total');
const forked = await metricOf(four, 'prompt_tokens_forked_total');
check(evaluated === 4 + 28 + 18 + 10 && forked === 3,
      `prompt tokens evaluated on the fresh server: ${evaluated} (60), copied: ${forked} (3)`);
check(new Set(aloneLate.map((x) => x.text)).size === 3, "the late requests differ (the test can tell them apart)", aloneLate.map((x) => x.text));
finish();
