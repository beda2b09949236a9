// Drives a server with the official `openai` npm client (what users run in production).
//   node openai_client.js BASE_URL API_KEY SPEC_JSON
// SPEC_JSON: {"model", "prompt", "max_tokens", "messages"}. Prints one JSON object:
// {"completion", "completion_stream", "chat", "chat_stream", "chunks": {...}} - the texts
// each call produced (streams concatenated) and how many chunks each stream had.
// The module path comes from OPENAI_MODULE (installed by pdctl_testlib.openai_module()).
const OpenAI = require(process.env.OPENAI_MODULE);

async function main() {
  const [baseURL, apiKey, specJson] = process.argv.slice(2);
  const spec = JSON.parse(specJson);
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30000 });
  const out = { chunks: {} };

  const c = await client.completions.create({
    model: spec.model, prompt: spec.prompt, max_tokens: spec.max_tokens, temperature: 0,
  });
  out.completion = c.choices[0].text;

  let text = "";
  let n = 0;
  const cs = await client.completions.create({
    model: spec.model, prompt: spec.prompt, max_tokens: spec.max_tokens, temperature: 0, stream: true,
  });
  for await (const chunk of cs) {
    n += 1;
    text += (chunk.choices[0] && chunk.choices[0].text) || "";
  }
  out.completion_stream = text;
  out.chunks.completion_stream = n;

  const ch = await client.chat.completions.create({
    model: spec.model, messages: spec.messages, max_tokens: spec.max_tokens, temperature: 0,
  });
  out.chat = ch.choices[0].message.content;

  text = "";
  n = 0;
  const chs = await client.chat.completions.create({
    model: spec.model, messages: spec.messages, max_tokens: spec.max_tokens, temperature: 0, stream: true,
  });
  for await (const chunk of chs) {
    n += 1;
    text += (chunk.choices[0] && chunk.choices[0].delta && chunk.choices[0].delta.content) || "";
  }
  out.chat_stream = text;
  out.chunks.chat_stream = n;

  const models = await client.models.list();
  out.models = models.data.map((m) => m.id);
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(`openai client error: ${e.status || ""} ${e.message}`);
  process.exit(3);
});
