// The official `openai` npm client against piquant-server: chat, completions, streaming, stop
// strings, seed reproducibility, usage counts, tokenize / detokenize. The package is installed
// once into the build tree (lib.mjs's openaiClient, shared with test_server_tools.mjs); without
// the npm registry the test is skipped with a message.
import { check, deadline, finish, openaiClient, skip, startServer } from './lib.mjs';

deadline(380);
const { OpenAI, error } = await openaiClient();
if (error) skip(error);

const srv = await startServer(['-np', '2', '-t', '1', '-c', '512']);
const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0 });
const raw = new OpenAI({ baseURL: srv.url, apiKey: 'unused', maxRetries: 0 });
const messages = [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Name a colour.' }];

// Chat, plain.
const c1 = await client.chat.completions.create({ model: 'piquant-demo', messages, max_tokens: 12, temperature: 0 });
check(c1.choices[0].message.role === 'assistant' && typeof c1.choices[0].message.content === 'string',
      'chat.completions.create', c1);
check(c1.usage.completion_tokens === 12 && c1.usage.prompt_tokens > 0 &&
      c1.usage.total_tokens === c1.usage.prompt_tokens + c1.usage.completion_tokens, 'chat usage', c1.usage);

// Chat, streaming: the same text as the plain call (greedy), usage with include_usage.
let streamed = '';
let finishReason = null;
let usage = null;
const s = await client.chat.completions.create({ model: 'piquant-demo', messages, max_tokens: 12, temperature: 0,
                                                 stream: true, stream_options: { include_usage: true } });
for await (const chunk of s) {
  if (chunk.choices.length) {
    streamed += chunk.choices[0].delta.content || '';
    if (chunk.choices[0].finish_reason) finishReason = chunk.choices[0].finish_reason;
  }
  if (chunk.usage) usage = chunk.usage;
}
check(streamed === c1.choices[0].message.content, 'streamed chat equals the plain chat', [streamed, c1.choices[0].message.content]);
check(finishReason === 'length', 'stream finish_reason length', finishReason);
check(usage && usage.completion_tokens === 12 && usage.prompt_tokens === c1.usage.prompt_tokens, 'stream usage chunk', usage);

// Completions, plain and streaming.
const p1 = await client.completions.create({ model: 'piquant-demo', prompt: 'Once upon a time', max_tokens: 16, temperature: 0 });
check(typeof p1.choices[0].text === 'string' && p1.usage.completion_tokens === 16, 'completions.create', p1);
let ptext = '';
for await (const chunk of await client.completions.create({ model: 'piquant-demo', prompt: 'Once upon a time',
                                                              max_tokens: 16, temperature: 0, stream: true })) {
  ptext += chunk.choices[0]?.text || '';
}
check(ptext === p1.choices[0].text, 'streamed completion equals the plain one', [ptext, p1.choices[0].text]);

// Stop strings.
const t = p1.choices[0].text;
const stop = t.slice(Math.floor(t.length / 2), Math.floor(t.length / 2) + 2);
const p2 = await client.completions.create({ model: 'piquant-demo', prompt: 'Once upon a time', max_tokens: 16,
                                             temperature: 0, stop: [stop] });
check(p2.choices[0].text === t.slice(0, t.indexOf(stop)) && p2.choices[0].finish_reason === 'stop',
      'stop string', [t, stop, p2.choices[0]]);

// Seed: sampled text (temperature 50: the demo model's logits are peaked) is the same twice with one seed, differs with others.
const sampled = async (seed) => (await client.chat.completions.create({
  model: 'piquant-demo', messages, max_tokens: 24, temperature: 50.0, top_k: 0, top_p: 1, min_p: 0, seed })).choices[0].message.content;
const a = await sampled(42);
const b = await sampled(42);
const others = [await sampled(43), await sampled(44), await sampled(45)];
check(a === b, 'same seed, same text', [a, b]);
check(others.some((o) => o !== a), 'other seeds, other text', [a, ...others]);

// Tokenize / detokenize round trip (llama-server's endpoints, through the client's raw post).
const text = 'The quick brown fox, naïve café.';
const tok = await raw.post('/tokenize', { body: { content: text } });
const detok = await raw.post('/detokenize', { body: { tokens: tok.tokens } });
check(tok.tokens.length > 0 && detok.content === text, 'tokenize / detokenize round trip', [tok, detok]);

// Errors surface as the client's typed errors.
try {
  await client.chat.completions.create({ model: 'x', messages: [], max_tokens: 4 });
  check(false, 'empty messages raise BadRequestError');
} catch (e) {
  check(e.status === 400 && /must not be empty/.test(e.message), 'empty messages raise BadRequestError', e.message);
}
finish();
