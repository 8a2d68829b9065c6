/* fuzz_safetensors.c — libFuzzer harness: a Hugging Face model directory (lib/model/hf.c: the
 * config.json reader, the safetensors header and the sharded index, on lib/model/json.c).
 *
 * The input is cut into parts at each SEP (below):
 *   1 part    model.safetensors, beside a fixed valid config.json (the seeds' shape);
 *   2 parts   config.json, model.safetensors;
 *   3 parts   config.json, model.safetensors.index.json, model-00001-of-00001.safetensors.
 * The directory lives in /dev/shm and its files are symbolic links to memfds, so an iteration
 * costs no disk I/O. A model that loads is used as in fuzz_llama2c.c. */
#include <sys/stat.h>

#include "fuzz_util.h"

#define SEP "\n#qnpu-fuzz-part#\n"
#define SHARD "model-00001-of-00001.safetensors"

/* dim 8, ffn 16, 1 layer, 2 heads (1 KV head), vocab 32, context 16: what gen_fuzz_corpus writes */
static const char default_config[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 16, "
    "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, "
    "\"vocab_size\": 32, \"max_position_embeddings\": 16, \"rms_norm_eps\": 1e-05, "
    "\"tie_word_embeddings\": false, \"bos_token_id\": 1, \"eos_token_id\": 2}";

static char dir[64];
static fz_file files[3];
static int mode; /* the layout the links currently have: 0 none, else the part count */
static qnpu_options *opts;

static void link_to(const fz_file *f, const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
    if (f && symlink(f->path, path) != 0)
        fz_die("symlink");
}

static void cleanup(void)
{
    static const char *const names[] = {"config.json", "model.safetensors",
                                        "model.safetensors.index.json", SHARD};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        link_to(NULL, names[i]);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fz_setup();
    snprintf(dir, sizeof dir, "/dev/shm/qnpu-fuzz-st-XXXXXX");
    if (!mkdtemp(dir))
        fz_die("mkdtemp");
    atexit(cleanup);
    for (int i = 0; i < 3; i++)
        fz_file_init(&files[i], "safetensors");
    link_to(&files[0], "config.json");
    opts = fz_options();
    return 0;
}

static void set_mode(int parts)
{
    if (parts == mode)
        return;
    link_to(parts < 3 ? &files[1] : NULL, "model.safetensors");
    link_to(parts == 3 ? &files[1] : NULL, "model.safetensors.index.json");
    link_to(parts == 3 ? &files[2] : NULL, SHARD);
    mode = parts;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *part[3] = {data};
    size_t len[3] = {size};
    int parts = 1;
    while (parts < 3) {
        const uint8_t *sep = fz_find(part[parts - 1], len[parts - 1], SEP);
        if (!sep)
            break;
        part[parts] = sep + strlen(SEP);
        len[parts] = (size_t)(data + size - part[parts]);
        len[parts - 1] = (size_t)(sep - part[parts - 1]);
        parts++;
    }
    if (parts == 1) {
        fz_file_set(&files[0], default_config, sizeof default_config - 1);
        fz_file_set(&files[1], data, size);
    } else {
        for (int i = 0; i < parts; i++)
            fz_file_set(&files[i], part[i], len[i]);
    }
    set_mode(parts);

    fz_load_model(dir, opts);
    return 0;
}
