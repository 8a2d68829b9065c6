/* tokenizer.c — SentencePiece-style BPE tokenizer (llama2.c tokenizer.bin, GGUF SPM vocab).
 * Not written yet. */
#include "../internal.h"
