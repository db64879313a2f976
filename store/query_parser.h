/*
 * query_parser.h - private to store/: the pieces of the query parser
 * (PROTOCOL.md §8.1), shared by query_lex.c (tokens, error messages),
 * query_expr.c (expressions) and query_parse.c (paths, names, the statement
 * and its rules).
 *
 * Tokens are produced one at a time on demand; the parser looks at most one
 * character past the current token (q_lex_next_char), which is all the
 * grammar needs to tell a function call from a path. query_lex.c words every
 * message, so each query error reads "Syntax error at position N: ...".
 */
#ifndef TWIN_STORE_QUERY_PARSER_H
#define TWIN_STORE_QUERY_PARSER_H

#include <stddef.h>

#include "query_ast.h"
#include "twin/error.h"

/* ---- query_lex.c ---- */

typedef enum q_tok_type {
	QT_END,
	QT_NAME,      /* [A-Za-z_$][A-Za-z0-9_$]*: a name or a keyword */
	QT_BRACKETED, /* [[any text without ]] ]]: a name, never a keyword */
	QT_NUMBER,
	QT_STRING,
	QT_PUNCT,
} q_tok_type;

/* QT_PUNCT codes of the two-character operators; single-character ones are
 * the character itself. "<>" is QP_NE like "!=". */
enum { QP_NE = 256, QP_LE, QP_GE };

typedef struct q_token {
	q_tok_type type;
	int punct;                /* QT_PUNCT */
	size_t at, end;           /* the token is text[at..end) */
	size_t name_at, name_len; /* QT_NAME, QT_BRACKETED: the name, brackets excluded */
	char *str;  /* QT_STRING: decoded value from cJSON_malloc, owned by the token until
	               the parser takes it (and sets str to NULL) */
	double num; /* QT_NUMBER */
	int is_int; /* QT_NUMBER written without fraction or exponent, and fits ival */
	long long ival;
} q_token;

typedef struct q_lexer {
	const unsigned char *text;
	size_t len;
	size_t pos; /* where the next token starts scanning */
	q_token tok;
	twin_error *err;
} q_lexer;

/* Check text[0..len) as a whole (length in characters, UTF-8, no NUL byte)
 * and read the first token. text must outlive the lexer. On error the lexer
 * still needs q_lex_end. */
twin_err q_lex_init(q_lexer *lx, const char *text, size_t len, twin_error *err);

/* Replace the current token by the next one. */
twin_err q_lex_next(q_lexer *lx);

/* The first non-blank character after the current token, or -1 at the end. */
int q_lex_next_char(const q_lexer *lx);

/* Release what the current token owns. */
void q_lex_end(q_lexer *lx);

/* The current token is the plain name word, ignoring ASCII case. */
int q_lex_is(const q_lexer *lx, const char *word);

/* The current token is a plain name that may not name a property unbracketed. */
int q_lex_reserved(const q_lexer *lx);

/* s[0..n) equals word, ignoring ASCII case. */
int q_word_eq(const char *s, size_t n, const char *word);

/* A NUL-terminated copy of text[at..at+n) from cJSON_malloc, NULL when out of
 * memory. */
char *q_lex_dup(const q_lexer *lx, size_t at, size_t n);

/* "Syntax error at position P: <fmt>." where P is the character offset of
 * byte at. Returns TWIN_E_INVALID. */
twin_err q_lex_fail(const q_lexer *lx, size_t at, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* "expected <what>, found <current token>." at the current token. When a name
 * would have been accepted (name_ok) and the token is a reserved word, the
 * message tells how to bracket it. */
twin_err q_lex_expected(const q_lexer *lx, const char *what, int name_ok);

/* How many bytes of the UTF-8 text s[0..n) a message quotes: at most a few
 * dozen, cut on a character boundary; *cut tells whether it was cut. */
int q_quote_len(const char *s, size_t n, int *cut);

/* TWIN_E_NOMEM with its message. */
twin_err q_lex_nomem(const q_lexer *lx);

/* The current token is the QT_PUNCT c. */
int q_lex_punct(const q_lexer *lx, int c);

/* ---- query_expr.c ---- */

/* Parentheses, NOT, unary minus and function calls inside one another. */
#define Q_MAX_NESTING 64

typedef struct q_parser {
	q_lexer lx;
	int depth; /* current nesting, up to Q_MAX_NESTING */
} q_parser;

/* Parse an expression (the OR level) at the current token into *out, owned
 * by the caller (q_node_free). *out is NULL on error. */
twin_err q_parse_expr(q_parser *p, q_node **out);

/* Free n and everything below it. NULL is accepted. */
void q_node_free(q_node *n);

/* ---- query_parse.c ---- */

/* Parse name {. name} at the current token; what names the first segment in
 * "expected ..." messages. On error *path is empty. */
twin_err q_parse_path(q_parser *p, const char *what, q_path *path);

/* Take the current token as a name (plain and not reserved, or bracketed)
 * into *out, a cJSON_malloc'd copy; what is for the message. */
twin_err q_take_name(q_parser *p, const char *what, char **out);

/* a and b name the same property under the name case rules of §8.2: the
 * top-level system names and properties.desired/reported ignore case,
 * everything else is compared exactly. */
int q_path_same(const q_path *a, const q_path *b);

/* The canonical spelling of a top-level twin field (deviceId, tags, ...)
 * that name matches ignoring case, or NULL. */
const char *q_system_name(const char *name);

/* Room for element n of the array v that has *cap elements of size bytes:
 * v itself, or a larger copy (v freed); NULL when out of memory, v kept. */
void *q_grow(void *v, size_t n, size_t *cap, size_t size);

/* Free what path owns and leave it empty. */
void q_path_free(q_path *path);

/* The aggregate the current token names (COUNT, AVG, ... in any case), or
 * Q_AGG_NONE. */
q_agg q_aggregate_at(const q_parser *p);

#endif
