// Drives a pdctl worker with the official `openai` npm package (v4): completions and chat,
// streamed and not, usage, and the errors the SDK maps to its exception classes.
// Usage: NODE_PATH=<dir with node_modules/openai> node check_openai.cjs BASE_URL MODEL
// Prints one line per check; exits 1 on the first failure.
'use strict';
const OpenAI = require('openai');

const [baseUrl, model] = process.argv.slice(2);
if (!baseUrl || !model) {
  console.error('usage: check_openai.cjs BASE_URL MODEL');
  process.exit(2);
}
const client = new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60000 });

function check(cond, what, detail) {
  if (!cond) {
    console.error(`FAIL ${what}${detail === undefined ? '' : ': ' + JSON.stringify(detail)}`);
    process.exit(1);
  }
  console.log(`ok ${what}`);
}

async function main() {
  const models = await client.models.list();
  check(models.data.length === 1 && models.data[0].id === model, 'models.list names the served model', models.data);

  // Completions, not streamed.
  const c = await client.completions.create({ model, prompt: 'The capital of France is', max_tokens: 8, temperature: 0 });
  check(c.object === 'text_completion', 'completion object', c.object);
  check(typeof c.id === 'string' && c.id.startsWith('cmpl-'), 'completion id', c.id);
  check(c.model === model, 'completion model', c.model);
  check(c.choices.length === 1 && typeof c.choices[0].text === 'string', 'completion choice', c.choices);
  check(['stop', 'length'].includes(c.choices[0].finish_reason), 'completion finish_reason', c.choices[0].finish_reason);
  check(c.usage.completion_tokens >= 1 && c.usage.completion_tokens <= 8, 'completion usage', c.usage);
  check(c.usage.total_tokens === c.usage.prompt_tokens + c.usage.completion_tokens, 'completion usage total', c.usage);

  // Completions, streamed: the deltas add up to the same text (greedy).
  const cs = await client.completions.create({
    model, prompt: 'The capital of France is', max_tokens: 8, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let usage = null;
  let finish = null;
  for await (const chunk of cs) {
    if (chunk.choices.length > 0) {
      text += chunk.choices[0].text;
      if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  check(text === c.choices[0].text, 'streamed completion text equals the non-streamed one', { text, whole: c.choices[0].text });
  check(finish === c.choices[0].finish_reason, 'streamed completion finish_reason', finish);
  check(usage && usage.completion_tokens === c.usage.completion_tokens, 'streamed completion usage', usage);

  // n = 2 and logprobs.
  const n2 = await client.completions.create({ model, prompt: 'Hi', max_tokens: 4, n: 2, logprobs: 2, seed: 1 });
  check(n2.choices.length === 2 && n2.choices[1].index === 1, 'completion n=2', n2.choices.map((x) => x.index));
  check(n2.choices[0].logprobs && n2.choices[0].logprobs.tokens.length === n2.choices[0].logprobs.token_logprobs.length,
    'completion logprobs', n2.choices[0].logprobs);

  // Chat, not streamed.
  const messages = [{ role: 'system', content: 'You are brief.' }, { role: 'user', content: 'Say hello.' }];
  const ch = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 });
  check(ch.object === 'chat.completion', 'chat object', ch.object);
  check(typeof ch.id === 'string' && ch.id.startsWith('chatcmpl-'), 'chat id', ch.id);
  check(ch.choices[0].message.role === 'assistant', 'chat role', ch.choices[0].message);
  check(typeof ch.choices[0].message.content === 'string', 'chat content', ch.choices[0].message);
  check(ch.usage.completion_tokens >= 1 && ch.usage.completion_tokens <= 8, 'chat usage', ch.usage);

  // Chat, streamed.
  const chs = await client.chat.completions.create({
    model, messages, max_completion_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  let content = '';
  let role = null;
  let chatFinish = null;
  let chatUsage = null;
  for await (const chunk of chs) {
    check(chunk.object === 'chat.completion.chunk', 'chat chunk object', chunk.object);
    if (chunk.choices.length > 0) {
      const d = chunk.choices[0].delta;
      if (d.role) role = d.role;
      if (d.content) content += d.content;
      if (chunk.choices[0].finish_reason) chatFinish = chunk.choices[0].finish_reason;
    }
    if (chunk.usage) chatUsage = chunk.usage;
  }
  check(role === 'assistant', 'streamed chat role', role);
  check(content === ch.choices[0].message.content, 'streamed chat content equals the non-streamed one',
    { content, whole: ch.choices[0].message.content });
  check(chatFinish === ch.choices[0].finish_reason, 'streamed chat finish_reason', chatFinish);
  check(chatUsage && chatUsage.completion_tokens === ch.usage.completion_tokens, 'streamed chat usage', chatUsage);

  // Errors the SDK turns into its exception classes.
  try {
    await client.completions.create({ model: 'no-such-model', prompt: 'x', max_tokens: 1 });
    check(false, 'unknown model is refused');
  } catch (e) {
    check(e instanceof OpenAI.NotFoundError && e.status === 404, 'unknown model: NotFoundError 404', e.status);
  }
  try {
    await client.completions.create({ model, prompt: 'x', max_tokens: 1, temperature: -3 });
    check(false, 'negative temperature is refused');
  } catch (e) {
    check(e instanceof OpenAI.BadRequestError && e.status === 400, 'negative temperature: BadRequestError 400', e.status);
    check(typeof e.message === 'string' && e.message.includes('temperature'), 'the error names the field', e.message);
  }
  try {
    await client.chat.completions.create({ model, messages, max_tokens: 10000000 });
    check(false, 'max_tokens beyond the context is refused');
  } catch (e) {
    check(e instanceof OpenAI.BadRequestError, 'max_tokens beyond the context: BadRequestError', e.status);
  }
  console.log('all checks passed');
}

main().catch((e) => {
  console.error(`FAIL unexpected error: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
