"""The official `openai` npm package (v4) against `pdctl serve`: completions and chat,
streamed and not, on a dummy Llama model whose directory holds the Llama-3 tokenizer files
of ../shared/tokenizers/llama3/ (so the chat template is the real one).

The package is installed once into BUILD/npm with npm (pdctl_testlib's openai_module, shared
with the router's tests); the test is skipped with a message when node or npm is missing or
the registry cannot be reached.
"""

from pdctl_testlib import *  # noqa: F401,F403

SCRIPT = "tests/integration/openai_client/check_openai.cjs"


def start_serve(ctx, *args, timeout=120):
    """Starts `pdctl serve ARGS` and waits for /health 200."""
    p = ctx.start("serve", *args, wait=False)

    def up():
        if not p.alive():
            return "exited"
        try:
            status, _, _ = http_request("GET", p.url + "/health", timeout=2)
            return "healthy" if status == 200 else None
        except OSError:
            return None

    if wait_until(up, timeout, what=f"pdctl serve at {p.url}") == "exited":
        log = p.log()
        raise CheckFailed(f"pdctl serve exited with {p.popen.returncode}:\n{log}")
    return p


@test
def openai_npm_client_completions_and_chat(ctx):
    tok_dir = ctx.shared_path("tokenizers/llama3")
    modules = os.path.dirname(ctx.openai_module())  # the node_modules directory
    model_dir = os.path.join(ctx.tmpdir, "llama3-dummy")
    os.makedirs(model_dir)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256,
        "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 128, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "float32",
        "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu",
    }
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(config, f)
    for name in os.listdir(tok_dir):
        os.symlink(os.path.join(tok_dir, name), os.path.join(model_dir, name))

    w = start_serve(ctx, "--model-path", model_dir, "--load-format", "dummy", "--served-model-name", "llama3-dummy",
                    "--threads", "1")
    env = dict(os.environ, NODE_PATH=modules)
    r = subprocess.run(["node", os.path.join(ctx.source, SCRIPT), w.url, "llama3-dummy"], capture_output=True,
                       text=True, timeout=300, env=env)
    print(r.stdout, end="")
    check(r.returncode == 0, "the openai client checks failed:\n", r.stdout, r.stderr)
    check("all checks passed" in r.stdout, r.stdout)
    check_eq(http_request("GET", w.url + "/health")[0], 200)


if __name__ == "__main__":
    run_tests()
