/*
 * query_ast.h - private to store/: the parsed form of a fleet query
 * (PROTOCOL.md §8), shared by the parser (query_parse.c) and the executor
 * (query_run.c).
 *
 * Everything hangs off one twin_query and is freed by twin_query_free.
 * Names and string literals are NUL-free UTF-8 (the parser refuses \u0000),
 * so C strings hold them.
 */
#ifndef TWIN_STORE_QUERY_AST_H
#define TWIN_STORE_QUERY_AST_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "twin/query.h"

/* A dotted property path. seg[i] is the i-th name without brackets; a
 * bracketed name ([[group]]) is never a keyword, otherwise it is the same. */
typedef struct q_path {
	char **seg;
	size_t n;
} q_path;

typedef enum q_kind {
	Q_LITERAL, /* lit: a cJSON value (an array for a list); NULL = undefined */
	Q_PATH,    /* path */
	Q_NEG,     /* - a */
	Q_NOT,     /* NOT a */
	Q_AND,     /* a AND b */
	Q_OR,      /* a OR b */
	Q_ARITH,   /* a op b, op one of + - * / % */
	Q_CMP,     /* a op b, op a q_cmp */
	Q_IN,      /* a IN b, b a Q_LITERAL list */
	Q_NIN,     /* a NIN b */
	Q_FUNC,    /* func(args) */
} q_kind;

typedef enum q_cmp { Q_EQ, Q_NE, Q_LT, Q_GT, Q_LE, Q_GE } q_cmp;

typedef enum q_func {
	Q_IS_DEFINED,
	Q_IS_NULL,
	Q_IS_BOOL,
	Q_IS_NUMBER,
	Q_IS_STRING,
	Q_IS_OBJECT,
	Q_IS_ARRAY,
	Q_IS_PRIMITIVE,
	Q_STARTSWITH,
	Q_ENDSWITH,
	Q_CONTAINS,
} q_func;

typedef struct q_node {
	q_kind kind;
	int op;               /* Q_ARITH: the operator character; Q_CMP: q_cmp; Q_FUNC: q_func */
	size_t at;            /* byte offset in the query text, for messages */
	struct q_node *a, *b; /* operands (a only for Q_NEG, Q_NOT) */
	struct q_node **args; /* Q_FUNC: nargs arguments (1 or 2, checked by the parser) */
	size_t nargs;
	q_path path; /* Q_PATH */
	cJSON *lit;  /* Q_LITERAL */
} q_node;

typedef enum q_agg { Q_AGG_NONE, Q_AGG_COUNT, Q_AGG_AVG, Q_AGG_SUM, Q_AGG_MIN, Q_AGG_MAX } q_agg;

/* One member of the select list: a path, or an aggregate (COUNT has no
 * path). name is the output member name: the alias, else the last path
 * segment (system names in canonical case), else the aggregate's name in
 * lower case ("count", "avg", …) as IoT Hub prints it ($1 style names are
 * not used). */
typedef struct q_item {
	q_agg agg;
	q_path path; /* empty for COUNT() */
	char *name;
} q_item;

struct twin_query {
	char *text;    /* the query as given (for continuation tokens) */
	long long top; /* TOP n, or -1 */
	int star;      /* SELECT * */
	q_item *items; /* the select list when !star */
	size_t nitems;
	int aggregate; /* some item is an aggregate */
	int modules;   /* FROM devices.modules */
	q_node *where; /* NULL: every row */
	q_path *group; /* GROUP BY paths */
	size_t ngroup;
};

#endif
