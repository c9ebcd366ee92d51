// piquant-server under 1, 2, 4, 8 concurrent streaming clients: aggregate tokens/s, time to
// first token and inter-token latency (p50 / p99) per client count. Starts its own server on a
// free loopback port (as many slots as the most clients) and stops it at the end.
//   node bench/server-bench.mjs build/tools/piquant-server [-m MODEL] [-t THREADS]
//        [--clients 1,2,4,8] [-n TOKENS] [-p PROMPT_TOKENS] [--rounds R]
// Without -m it measures the built-in demo model. Figures: docs/performance.md.
import { startServer, stream } from '../tests/server/lib.mjs';

const argv = process.argv.slice(3);
const opt = { model: null, threads: '0', clients: [1, 2, 4, 8], n: 64, p: 32, rounds: 2 };
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const v = () => argv[++i];
  if (a === '-m') opt.model = v();
  else if (a === '-t') opt.threads = v();
  else if (a === '--clients') opt.clients = v().split(',').map(Number);
  else if (a === '-n') opt.n = Number(v());
  else if (a === '-p') opt.p = Number(v());
  else if (a === '--rounds') opt.rounds = Number(v());
  else { console.error(`unknown option ${a}`); process.exit(1); }
}
const slots = Math.max(...opt.clients);
const args = ['-np', String(slots), '-t', opt.threads, '-c', String(opt.p + opt.n + 16),
              '--max-queue', String(4 * slots)];
if (opt.model) args.push('-m', opt.model);
const srv = await startServer(args);
const U = `${srv.url}/v1/completions`;
const pct = (xs, q) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
// A distinct prompt for every request of the run (token ids, so the prompt length is exact): its
// first token differs from every other request's, so no slot's cache holds any of it and every
// row evaluates all its prompts (before, the rows for 2, 4, 8 clients reused prompts that the
// rows before them had left in the slots' caches). The last column sums the prompt tokens the
// server reports as taken from a cache (usage.prompt_tokens_details.cached_tokens): 0 here.
const nVocab = (await (await fetch(`${srv.url}/v1/models`)).json()).data[0].meta.n_vocab;
let requests = 0;
const firsts = new Set();
const prompt = () => {
  const u = requests++;
  const p = Array.from({ length: opt.p }, (_, i) => 3 + ((u * 131 + i * 7) % (nVocab - 3)));
  if (firsts.has(p[0])) throw new Error('more requests than distinct first tokens');
  firsts.add(p[0]);
  return p;
};
const one = () => stream(U, { prompt: prompt(), max_tokens: opt.n, temperature: 0, ignore_eos: true });
await one();  // warm-up
console.log(`piquant-server bench: ${opt.model || 'demo model'}, -t ${opt.threads}, ${slots} slots, ` +
            `prompt ${opt.p} tokens, ${opt.n} generated per request, ${opt.rounds} round(s)`);
console.log('clients | aggregate tok/s | per-client tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | cached');
console.log('---: | ---: | ---: | ---: | ---: | ---: | ---: | ---:');
for (const c of opt.clients) {
  const ttft = [], itl = [];
  let tokens = 0, cached = 0;
  const t0 = performance.now();
  for (let r = 0; r < opt.rounds; r++) {
    const res = await Promise.all([...Array(c).keys()].map(() => one()));
    for (const x of res) {
      if (x.status !== 200 || !x.usage) throw new Error(`request failed: ${x.status} ${x.error}`);
      const details = x.usage.prompt_tokens_details;
      cached += details ? details.cached_tokens : 0;
      tokens += x.usage.completion_tokens;
      if (x.times.length) ttft.push(x.times[0]);
      for (let i = 1; i < x.times.length; i++) itl.push(x.times[i] - x.times[i - 1]);
    }
  }
  const secs = (performance.now() - t0) / 1000;
  const f = (x) => x.toFixed(1);
  console.log(`${c} | ${f(tokens / secs)} | ${f(tokens / secs / c)} | ${f(pct(ttft, 0.5))} | ${f(pct(ttft, 0.99))} | ` +
              `${f(pct(itl, 0.5))} | ${f(pct(itl, 0.99))} | ${cached}`);
}
await srv.stop();
process.exit(0);
