/* recipe.h — YAML recipes (private to lib/).
 *
 * The presets shipped as recipes/NAME.yaml are compiled into the library: tools/gen_recipes.sh
 * turns them into $(B)/gen/recipes.c, which defines qnpu__recipe_presets. The loader itself
 * (recipe.c) is reached through the public qnpu_options_load_recipe. */
#ifndef QNPU_RECIPE_H
#define QNPU_RECIPE_H

#include "../internal.h"

typedef struct qnpu__recipe_preset {
    const char *name;  /* "w4a8": the file name without ".yaml" */
    const char *text;  /* the file's exact text, NUL-terminated */
} qnpu__recipe_preset;

/* Every shipped preset, in the order of the Makefile's sorted file list, then {NULL, NULL}. */
extern const qnpu__recipe_preset qnpu__recipe_presets[];

/* Parse `len` bytes of recipe YAML and apply it to `o`. `name` (a path, or "preset NAME")
 * starts every message: "name:line:column: problem". On failure `o` is unchanged (but for an
 * out-of-memory failure while copying text values) and the status is QNPU_ERR_RECIPE, or
 * QNPU_ERR_NO_MEMORY. */
qnpu_status qnpu__recipe_apply(qnpu_options *o, const char *name, const char *text, size_t len);

#endif
