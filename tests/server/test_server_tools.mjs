// Structured output and tool calls through piquant-server (issue 20's server part), with the
// official `openai` npm client: on the seeded demo model (its text is noise) the grammar alone
// makes every reply valid, so each tool call must name a declared function and its arguments must
// validate against that function's schema, in the Llama 3.1 (JSON, "parameters") and Qwen 2.5
// (ChatML, <tool_call>) formats; streamed calls arrive as delta.tool_calls; response_format
// json_object / json_schema constrain chat and completions; bad input gets 400 with OpenAI's
// error shape. Without the npm registry the client part is skipped with a message.
import { check, deadline, finish, openaiClient, post, startServer } from './lib.mjs';

deadline(380);

// A validator for the schema subset the tests use (independent of the server's converter).
function validate(v, s, at = '$') {
  if (s.enum) return s.enum.some((e) => JSON.stringify(e) === JSON.stringify(v)) ? null : `${at}: not in enum`;
  if (s.const !== undefined) return JSON.stringify(s.const) === JSON.stringify(v) ? null : `${at}: not the const`;
  if (s.anyOf) return s.anyOf.some((x) => validate(v, x, at) === null) ? null : `${at}: no anyOf branch`;
  switch (s.type) {
    case 'object': {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) return `${at}: not an object`;
      for (const r of s.required || []) if (!(r in v)) return `${at}: '${r}' missing`;
      const props = s.properties || {};
      for (const [k, x] of Object.entries(v)) {
        if (!(k in props)) {
          if (s.additionalProperties === false || s.properties) return `${at}: unexpected '${k}'`;
          continue;
        }
        const e = validate(x, props[k], `${at}.${k}`);
        if (e) return e;
      }
      return null;
    }
    case 'array': {
      if (!Array.isArray(v)) return `${at}: not an array`;
      if (s.minItems !== undefined && v.length < s.minItems) return `${at}: too few items`;
      if (s.maxItems !== undefined && v.length > s.maxItems) return `${at}: too many items`;
      for (let i = 0; i < v.length; i++) {
        const e = validate(v[i], s.items || {}, `${at}[${i}]`);
        if (e) return e;
      }
      return null;
    }
    case 'string':
      if (typeof v !== 'string') return `${at}: not a string`;
      if (s.maxLength !== undefined && [...v].length > s.maxLength) return `${at}: too long`;
      if (s.minLength !== undefined && [...v].length < s.minLength) return `${at}: too short`;
      return null;
    case 'integer': return Number.isInteger(v) ? null : `${at}: not an integer`;
    case 'number': return typeof v === 'number' ? null : `${at}: not a number`;
    case 'boolean': return typeof v === 'boolean' ? null : `${at}: not a boolean`;
    default: return null;
  }
}

const tools = [
  { type: 'function', function: { name: 'get_weather', description: 'The weather in a city.',
    parameters: { type: 'object', properties: {
      city: { type: 'string', minLength: 1, maxLength: 12 },
      unit: { enum: ['celsius', 'fahrenheit'] } }, required: ['city', 'unit'], additionalProperties: false } } },
  { type: 'function', function: { name: 'move_robot', description: 'Drive the robot.',
    parameters: { type: 'object', properties: {
      direction: { enum: ['forward', 'back', 'left', 'right'] },
      cm: { type: 'integer' },
      waypoints: { type: 'array', items: { type: 'number' }, maxItems: 3 } },
      required: ['direction', 'cm'], additionalProperties: false } } },
];
const schemaOf = Object.fromEntries(tools.map((t) => [t.function.name, t.function.parameters]));
const messages = [{ role: 'system', content: 'You control a robot.' },
                  { role: 'user', content: 'What is the weather in Oslo? Then drive forward 20 cm.' }];

function checkCall(call, what, name) {
  if (!call || call.type !== 'function' || typeof call.id !== 'string' || !call.id) return `${what}: bad call ${JSON.stringify(call)}`;
  const f = call.function;
  if (!(f.name in schemaOf)) return `${what}: unknown function ${f.name}`;
  if (name && f.name !== name) return `${what}: ${f.name} instead of ${name}`;
  let args;
  try { args = JSON.parse(f.arguments); } catch (e) { return `${what}: arguments are not JSON: ${f.arguments}`; }
  return validate(args, schemaOf[f.name]);
}

// --- without the client: plain fetch (runs even when npm cannot be reached) -----------------
const servers = {};
for (const fmt of ['llama3', 'chatml']) {
  servers[fmt] = await startServer(['-np', '2', '-t', '1', '-c', '4096', '--chat-template', fmt]);
}
const url = (fmt, p) => `${servers[fmt].url}${p}`;

// The two formats run at once (one server each, one thread each).
await Promise.all(['llama3', 'chatml'].map(async (fmt) => {
  // tool_choice "required": several seeds (temperature 3: the noise model's choice of function
  // varies), both functions seen, every call valid.
  const names = new Set();
  let bad = null;
  for (let seed = 1; seed <= 5; seed++) {
    const r = await post(url(fmt, '/v1/chat/completions'), { messages, tools, tool_choice: 'required',
      temperature: 3, seed, max_tokens: 300 });
    const c = r.json && r.json.choices && r.json.choices[0];
    if (r.status !== 200 || !c || c.finish_reason !== 'tool_calls' || c.message.content !== null ||
        !Array.isArray(c.message.tool_calls) || c.message.tool_calls.length !== 1) {
      bad = [seed, r.status, r.text.slice(0, 400)];
      break;
    }
    const e = checkCall(c.message.tool_calls[0], `${fmt} seed ${seed}`);
    if (e) { bad = e; break; }
    names.add(c.message.tool_calls[0].function.name);
  }
  check(bad === null, `${fmt}: tool_choice required gives valid tool_calls (5 seeds)`, bad);
  check(names.size === 2, `${fmt}: both declared functions were called`, [...names]);
  // A named function.
  for (const name of ['get_weather', 'move_robot']) {
    const r = await post(url(fmt, '/v1/chat/completions'), { messages, tools, temperature: 1, seed: 7, max_tokens: 300,
      tool_choice: { type: 'function', function: { name } } });
    const c = r.json && r.json.choices[0];
    check(r.status === 200 && c.finish_reason === 'tool_calls' && !checkCall(c.message.tool_calls[0], fmt, name),
          `${fmt}: tool_choice naming ${name}`, r.text.slice(0, 400));
  }
  // "auto" on a noise model: either text or a valid call; "none": text.
  const ra = await post(url(fmt, '/v1/chat/completions'), { messages, tools, temperature: 1, seed: 3, max_tokens: 40 });
  const ca = ra.json && ra.json.choices[0];
  check(ra.status === 200 && (ca.finish_reason === 'tool_calls' ? !checkCall(ca.message.tool_calls[0], fmt)
                                                                 : typeof ca.message.content === 'string'),
        `${fmt}: tool_choice auto answers text or a valid call`, ra.text.slice(0, 300));
  const rn = await post(url(fmt, '/v1/chat/completions'), { messages, tools, tool_choice: 'none', temperature: 0, max_tokens: 8 });
  check(rn.status === 200 && typeof rn.json.choices[0].message.content === 'string' && !rn.json.choices[0].message.tool_calls,
        `${fmt}: tool_choice none answers text`, rn.text.slice(0, 300));
  // The next turn: the assistant's call and the tool's result rendered by the template; the
  // prompt grows by them.
  const first = await post(url(fmt, '/v1/chat/completions'), { messages, tools, tool_choice: 'required', temperature: 0, max_tokens: 300 });
  const call = first.json.choices[0].message.tool_calls[0];
  const turn2 = [...messages, { role: 'assistant', content: null, tool_calls: [call] },
                 { role: 'tool', tool_call_id: call.id, content: '{"temperature": 3, "sky": "grey"}' }];
  const r2 = await post(url(fmt, '/v1/chat/completions'), { messages: turn2, tools, temperature: 0, max_tokens: 8, tool_choice: 'none' });
  check(r2.status === 200 && r2.json.usage.prompt_tokens > first.json.usage.prompt_tokens + 10,
        `${fmt}: assistant tool_calls and a tool result are rendered into the next turn`,
        [r2.status, r2.json && r2.json.usage, first.json.usage]);
}));

// response_format (the exact tool formats the templates write are unit-tested in
// tests/lib/test_chat.cpp).
const person = { type: 'object', properties: { name: { type: 'string', maxLength: 10 },
  age: { type: 'integer' }, tags: { type: 'array', items: { enum: ['a', 'b'] }, minItems: 1, maxItems: 2 } },
  required: ['name', 'age', 'tags'], additionalProperties: false };
{
  let bad = null;
  for (let seed = 1; seed <= 3 && !bad; seed++) {
    const r = await post(url('chatml', '/v1/chat/completions'), { messages, temperature: 1, seed, max_tokens: 300,
      response_format: { type: 'json_schema', json_schema: { name: 'person', schema: person, strict: true } } });
    let v = null;
    try { v = JSON.parse(r.json.choices[0].message.content); } catch (e) { bad = [seed, r.text.slice(0, 300)]; break; }
    const e = validate(v, person);
    if (e || r.json.choices[0].finish_reason !== 'stop') bad = [seed, e, r.text.slice(0, 300)];
  }
  check(bad === null, 'chat response_format json_schema: 3 replies validate', bad);
  const o = await post(url('chatml', '/v1/chat/completions'), { messages, temperature: 1, seed: 2, max_tokens: 300,
    response_format: { type: 'json_object' } });
  let obj = null;
  try { obj = JSON.parse(o.json.choices[0].message.content); } catch (e) { /* checked below */ }
  check(obj !== null && typeof obj === 'object' && !Array.isArray(obj), 'chat response_format json_object', o.text.slice(0, 300));
  const p = await post(url('llama3', '/v1/completions'), { prompt: 'Person:', temperature: 1, seed: 4, max_tokens: 300,
    response_format: { type: 'json_schema', json_schema: { name: 'person', schema: person } } });
  let pv = null;
  try { pv = JSON.parse(p.json.choices[0].text); } catch (e) { /* checked below */ }
  check(pv !== null && validate(pv, person) === null, 'completions response_format json_schema', p.text.slice(0, 300));
  // Members come in the declared order (the request's key order is kept).
  check(pv !== null && Object.keys(pv).join() === 'name,age,tags', 'schema members in declared order', pv);
}

// Bad input: 400 with {"error": {"message", "type", "code"}}.
const badCases = [
  ['invalid schema (unsupported keyword)', { messages, response_format: { type: 'json_schema',
    json_schema: { name: 'x', schema: { type: 'object', properties: { n: { type: 'integer', minimum: 3 } } } } } }, /minimum/],
  ['invalid schema ($ref to nowhere)', { messages, response_format: { type: 'json_schema',
    json_schema: { name: 'x', schema: { $ref: '#/$defs/nope' } } } }, /nowhere/],
  ['unknown response_format type', { messages, response_format: { type: 'yaml' } }, /response_format/],
  ['unknown tool_choice name', { messages, tools, tool_choice: { type: 'function', function: { name: 'fly' } } }, /'fly'.*not among/],
  ['tool_choice string', { messages, tools, tool_choice: 'sometimes' }, /tool_choice/],
  ['tool_choice without tools', { messages, tool_choice: 'required' }, /no 'tools'/],
  ['tools not an array', { messages, tools: { type: 'function' } }, /'tools' must be an array/],
  ['tool with a bad name', { messages, tools: [{ type: 'function', function: { name: 'a b' } }] }, /tools\[0\]\.function\.name/],
  ['tool parameters with an unsupported keyword', { messages, tools: [{ type: 'function', function: { name: 'f',
    parameters: { type: 'object', properties: { x: { type: 'string', format: 'email', not: {} } } } } }] }, /keyword 'not'/],
  ['tool message without a matching call', { messages: [...messages, { role: 'tool', tool_call_id: 'call_9', content: '1' }] },
   /call_9.*matches no tool call/],
  ['tool message without tool_call_id', { messages: [...messages, { role: 'tool', content: '1' }] }, /tool_call_id/],
  ['assistant tool_calls malformed', { messages: [...messages, { role: 'assistant', tool_calls: [{ type: 'function' }] }] },
   /tool_calls\[0\]\.id/],
  ['response_format with tools', { messages, tools, response_format: { type: 'json_object' } }, /together with 'tools'/],
];
for (const [what, body, re] of badCases) {
  const r = await post(url('chatml', '/v1/chat/completions'), { max_tokens: 4, ...body });
  const e = r.json && r.json.error;
  check(r.status === 400 && e && typeof e.message === 'string' && re.test(e.message) &&
        e.type === 'invalid_request_error' && e.code === 400, `400: ${what}`, [r.status, r.text.slice(0, 300)]);
}
const rc = await post(url('chatml', '/v1/completions'), { prompt: 'x', tools, max_tokens: 4 });
check(rc.status === 400 && /chat\/completions only/.test(rc.json.error.message), '400: tools on /v1/completions', rc.text);

// --- the official openai client --------------------------------------------------------------
const { OpenAI, error } = await openaiClient();
if (error) {
  console.log(`SKIP (client part): ${error}`);
  finish();
}

await Promise.all(['llama3', 'chatml'].map(async (fmt) => {
  const client = new OpenAI({ baseURL: `${servers[fmt].url}/v1`, apiKey: 'unused', maxRetries: 0 });
  const req = { model: 'piquant-demo', messages, tools, tool_choice: 'required', temperature: 1, seed: 11, max_tokens: 300 };
  const c = await client.chat.completions.create(req);
  const call = c.choices[0].message.tool_calls && c.choices[0].message.tool_calls[0];
  const e = checkCall(call, fmt);
  check(c.choices[0].finish_reason === 'tool_calls' && !e, `openai client, ${fmt}: tool_calls whose arguments validate`,
        e || c.choices[0]);
  // Streamed: the client's accumulated delta.tool_calls equal the plain answer (same seed).
  const acc = [];
  let fin = null;
  for await (const ch of await client.chat.completions.create({ ...req, stream: true })) {
    const d = ch.choices[0] && ch.choices[0].delta;
    if (ch.choices[0] && ch.choices[0].finish_reason) fin = ch.choices[0].finish_reason;
    for (const t of (d && d.tool_calls) || []) {
      acc[t.index] = acc[t.index] || { id: '', type: '', function: { name: '', arguments: '' } };
      if (t.id) acc[t.index].id = t.id;
      if (t.type) acc[t.index].type = t.type;
      if (t.function && t.function.name) acc[t.index].function.name += t.function.name;
      if (t.function && t.function.arguments) acc[t.index].function.arguments += t.function.arguments;
    }
  }
  check(fin === 'tool_calls' && acc.length === 1 && acc[0].function.name === call.function.name &&
        acc[0].function.arguments === call.function.arguments && !checkCall(acc[0], fmt),
        `openai client, ${fmt}: streamed delta.tool_calls equal the plain call`, [fin, acc, call]);
  // The client's runTools-style round trip: the call and its result in the next request.
  const next = await client.chat.completions.create({ model: 'piquant-demo', tools, max_tokens: 8, temperature: 0,
    messages: [...messages, c.choices[0].message, { role: 'tool', tool_call_id: call.id, content: 'done' }] });
  check(typeof next.choices[0].message.content === 'string' || next.choices[0].finish_reason === 'tool_calls',
        `openai client, ${fmt}: the tool result goes back in the next turn`, next.choices[0]);
  try {
    await client.chat.completions.create({ ...req, tool_choice: { type: 'function', function: { name: 'fly' } } });
    check(false, `openai client, ${fmt}: unknown tool_choice raises BadRequestError`);
  } catch (err) {
    check(err.status === 400 && /fly/.test(err.message), `openai client, ${fmt}: unknown tool_choice raises BadRequestError`, err.message);
  }
}));
for (const fmt of ['llama3', 'chatml']) {  // the test's cost, for the record
  const m = await (await fetch(url(fmt, '/metrics'))).text();
  const v = (n) => (m.match(new RegExp(`^piquant_${n} (\\S+)$`, 'm')) || [])[1];
  console.log(`${fmt} server: ${v('tokens_generated_total')} tokens generated, ${v('prompt_tokens_evaluated_total')} prompt tokens evaluated`);
}
finish();
