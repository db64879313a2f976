/*
 * query_expr.c - expressions of fleet queries (PROTOCOL.md §8.1): the WHERE
 * clause, parsed into the nodes of query_ast.h. Property paths come from
 * query_parse.c, which the select list and GROUP BY share.
 *
 * Recursive descent with one function per precedence level, low to high:
 * OR, AND, NOT, comparisons and IN/NIN, + -, * / %, unary minus. The parser
 * recurses only through parentheses, NOT, unary minus and function calls,
 * which Q_MAX_NESTING bounds; chains of binary operators are built in loops
 * as left-deep trees. So the stack a query costs here and in q_node_free is
 * bounded, and so is an evaluator's that recurses along b and args; the
 * left spine (a) may be as long as the text allows (about 4000 nodes).
 *
 * Everything is allocated with cJSON_malloc so the whole AST, literals
 * included, follows cJSON_InitHooks and out-of-memory paths can be tested.
 */
#include <string.h>

#include <cjson/cJSON.h>

#include "query_parser.h"

#define Q_MAX_ARGS 2 /* of any function */

typedef twin_err (*q_level)(q_parser *p, q_node **out);

static twin_err parse_or(q_parser *p, q_node **out);

static const q_token *tok(const q_parser *p)
{
	return &p->lx.tok;
}

static twin_err next(q_parser *p)
{
	return q_lex_next(&p->lx);
}

static int is_punct(const q_parser *p, int c)
{
	return q_lex_punct(&p->lx, c);
}

static int is_word(const q_parser *p, const char *word)
{
	return q_lex_is(&p->lx, word);
}

static twin_err nomem(const q_parser *p)
{
	return q_lex_nomem(&p->lx);
}

/* Iterative along a (the left-deep spine of operator chains), recursive only
 * along b and args, whose depth the nesting limit bounds. */
void q_node_free(q_node *n)
{
	while (n != NULL) {
		q_node *a = n->a;

		q_node_free(n->b);
		for (size_t i = 0; i < n->nargs; i++)
			q_node_free(n->args[i]);
		cJSON_free(n->args);
		q_path_free(&n->path);
		cJSON_Delete(n->lit);
		cJSON_free(n);
		n = a;
	}
}

static q_node *node_new(q_kind kind, int op, size_t at)
{
	q_node *n = cJSON_malloc(sizeof(*n));

	if (n != NULL) {
		memset(n, 0, sizeof(*n));
		n->kind = kind;
		n->op = op;
		n->at = at;
	}
	return n;
}

static twin_err enter(q_parser *p)
{
	if (p->depth == Q_MAX_NESTING)
		return q_lex_fail(&p->lx, tok(p)->at, "expression nested deeper than %d levels",
		                  Q_MAX_NESTING);
	p->depth++;
	return TWIN_OK;
}

static int is_scalar_literal(const q_parser *p)
{
	return tok(p)->type == QT_NUMBER || tok(p)->type == QT_STRING || is_word(p, "TRUE") ||
	       is_word(p, "FALSE") || is_word(p, "NULL") || is_word(p, "UNDEFINED");
}

/* The scalar literal at the current token; *v is NULL for undefined. */
static twin_err take_scalar(q_parser *p, cJSON **v)
{
	twin_err rc;

	*v = NULL;
	if (tok(p)->type == QT_NUMBER) {
		*v = cJSON_CreateNumber(tok(p)->num);
	} else if (tok(p)->type == QT_STRING) {
		/* Take the decoded string rather than copy it, as store/json.c does. */
		*v = cJSON_CreateNull();
		if (*v != NULL) {
			(*v)->type = cJSON_String;
			(*v)->valuestring = p->lx.tok.str;
			p->lx.tok.str = NULL;
		}
	} else if (is_word(p, "TRUE")) {
		*v = cJSON_CreateTrue();
	} else if (is_word(p, "FALSE")) {
		*v = cJSON_CreateFalse();
	} else if (is_word(p, "NULL")) {
		*v = cJSON_CreateNull();
	} else {
		return next(p); /* undefined */
	}
	if (*v == NULL)
		return nomem(p);
	rc = next(p);
	if (rc != TWIN_OK) {
		cJSON_Delete(*v);
		*v = NULL;
	}
	return rc;
}

/* A list element: a scalar literal or a negative number; undefined has no
 * JSON form, and nested lists would read as [[names]]. */
static twin_err list_element(q_parser *p, cJSON **v)
{
	int neg = is_punct(p, '-');
	twin_err rc;

	*v = NULL;
	if (neg) {
		rc = next(p);
		if (rc != TWIN_OK)
			return rc;
		if (tok(p)->type != QT_NUMBER)
			return q_lex_expected(&p->lx, "a number after '-'", 0);
	}
	if (is_word(p, "UNDEFINED"))
		return q_lex_fail(&p->lx, tok(p)->at, "undefined is not allowed in a list");
	if (!is_scalar_literal(p))
		return q_lex_expected(&p->lx, "a literal", 0);
	rc = take_scalar(p, v);
	if (rc == TWIN_OK && neg)
		cJSON_SetNumberValue(*v, -(*v)->valuedouble);
	return rc;
}

/* [ literal {, literal} ] at the current '[', as a cJSON array. */
static twin_err parse_list(q_parser *p, cJSON **out)
{
	cJSON *arr = cJSON_CreateArray(), *v;
	twin_err rc;

	*out = NULL;
	if (arr == NULL)
		return nomem(p);
	rc = next(p);
	while (rc == TWIN_OK) {
		rc = list_element(p, &v);
		if (rc != TWIN_OK)
			break;
		cJSON_AddItemToArray(arr, v);
		if (is_punct(p, ']')) {
			rc = next(p);
			if (rc == TWIN_OK) {
				*out = arr;
				return TWIN_OK;
			}
			break;
		}
		rc = is_punct(p, ',') ? next(p) : q_lex_expected(&p->lx, "',' or ']'", 0);
	}
	cJSON_Delete(arr);
	return rc;
}

static twin_err literal_node(q_parser *p, q_node **out)
{
	size_t at = tok(p)->at;
	cJSON *v = NULL;
	twin_err rc;

	*out = NULL;
	rc = is_punct(p, '[') ? parse_list(p, &v) : take_scalar(p, &v);
	if (rc != TWIN_OK)
		return rc;
	*out = node_new(Q_LITERAL, 0, at);
	if (*out == NULL) {
		cJSON_Delete(v);
		return nomem(p);
	}
	(*out)->lit = v;
	return TWIN_OK;
}

static twin_err path_node(q_parser *p, q_node **out)
{
	q_node *n = node_new(Q_PATH, 0, tok(p)->at);
	twin_err rc;

	*out = NULL;
	if (n == NULL)
		return nomem(p);
	rc = q_parse_path(p, "a property name", &n->path);
	if (rc != TWIN_OK) {
		q_node_free(n);
		return rc;
	}
	*out = n;
	return TWIN_OK;
}

static const struct {
	const char *name;
	q_func func;
	size_t nargs;
} functions[] = {
        {"IS_DEFINED", Q_IS_DEFINED, 1}, {"IS_NULL", Q_IS_NULL, 1},
        {"IS_BOOL", Q_IS_BOOL, 1},       {"IS_NUMBER", Q_IS_NUMBER, 1},
        {"IS_STRING", Q_IS_STRING, 1},   {"IS_OBJECT", Q_IS_OBJECT, 1},
        {"IS_ARRAY", Q_IS_ARRAY, 1},     {"IS_PRIMITIVE", Q_IS_PRIMITIVE, 1},
        {"STARTSWITH", Q_STARTSWITH, 2}, {"ENDSWITH", Q_ENDSWITH, 2},
        {"CONTAINS", Q_CONTAINS, 2},
};

static twin_err unknown_function(q_parser *p)
{
	const q_token *t = tok(p);
	const char *s = (const char *)p->lx.text + t->at;
	int cut, n = q_quote_len(s, t->end - t->at, &cut);

	if (q_aggregate_at(p) != Q_AGG_NONE)
		return q_lex_fail(&p->lx, t->at,
		                  "aggregate %.*s() is only allowed in the select list", n, s);
	return q_lex_fail(&p->lx, t->at, "unknown function '%.*s%s'", n, s, cut ? "..." : "");
}

/* func ( expr {, expr} ): arguments past the function's count are parsed
 * only to be counted for the message. */
static twin_err parse_args(q_parser *p, q_node *call, size_t *count)
{
	q_node *arg;
	twin_err rc = next(p);

	*count = 0;
	if (rc == TWIN_OK && is_punct(p, ')'))
		return next(p);
	while (rc == TWIN_OK) {
		rc = parse_or(p, &arg);
		if (rc != TWIN_OK)
			break;
		if (call->nargs < Q_MAX_ARGS)
			call->args[call->nargs++] = arg;
		else
			q_node_free(arg);
		++*count;
		if (!is_punct(p, ','))
			return is_punct(p, ')')
			               ? next(p)
			               : q_lex_expected(&p->lx, "an operator, ',' or ')'", 0);
		rc = next(p);
	}
	return rc;
}

static twin_err parse_call(q_parser *p, q_node **out)
{
	size_t i, count, at = tok(p)->at;
	q_node *n;
	twin_err rc;

	*out = NULL;
	for (i = 0; i < sizeof(functions) / sizeof(functions[0]); i++) {
		if (is_word(p, functions[i].name))
			break;
	}
	if (i == sizeof(functions) / sizeof(functions[0]))
		return unknown_function(p);
	n = node_new(Q_FUNC, (int)functions[i].func, at);
	if (n == NULL || (n->args = cJSON_malloc(Q_MAX_ARGS * sizeof(*n->args))) == NULL) {
		q_node_free(n);
		return nomem(p);
	}
	rc = enter(p);
	if (rc == TWIN_OK) {
		rc = next(p); /* the name; parse_args steps over '(' */
		if (rc == TWIN_OK)
			rc = parse_args(p, n, &count);
		p->depth--;
	}
	if (rc == TWIN_OK && count != functions[i].nargs)
		rc = q_lex_fail(&p->lx, at, "%s takes %zu argument%s, found %zu", functions[i].name,
		                functions[i].nargs, functions[i].nargs == 1 ? "" : "s", count);
	if (rc != TWIN_OK) {
		q_node_free(n);
		return rc;
	}
	*out = n;
	return TWIN_OK;
}

static twin_err parse_paren(q_parser *p, q_node **out)
{
	twin_err rc = enter(p);

	*out = NULL;
	if (rc != TWIN_OK)
		return rc;
	rc = next(p);
	if (rc == TWIN_OK)
		rc = parse_or(p, out);
	if (rc == TWIN_OK)
		rc = is_punct(p, ')') ? next(p) : q_lex_expected(&p->lx, "an operator or ')'", 0);
	p->depth--;
	if (rc != TWIN_OK) {
		q_node_free(*out);
		*out = NULL;
	}
	return rc;
}

static twin_err parse_primary(q_parser *p, q_node **out)
{
	*out = NULL;
	if (is_scalar_literal(p) || is_punct(p, '['))
		return literal_node(p, out);
	if (is_punct(p, '('))
		return parse_paren(p, out);
	if (tok(p)->type == QT_NAME && !q_lex_reserved(&p->lx) && q_lex_next_char(&p->lx) == '(')
		return parse_call(p, out);
	if (tok(p)->type == QT_BRACKETED || (tok(p)->type == QT_NAME && !q_lex_reserved(&p->lx)))
		return path_node(p, out);
	return q_lex_expected(&p->lx, "an expression", 1);
}

/* NOT a or - a. Minus in front of a number literal makes a negative literal,
 * so "-5" needs no arithmetic at run time and lists and comparisons read
 * the same. */
static twin_err parse_prefix(q_parser *p, q_kind kind, q_level operand, q_node **out)
{
	size_t at = tok(p)->at;
	q_node *a = NULL;
	twin_err rc = enter(p);

	*out = NULL;
	if (rc != TWIN_OK)
		return rc;
	rc = next(p);
	if (rc == TWIN_OK)
		rc = operand(p, &a);
	p->depth--;
	if (rc != TWIN_OK)
		return rc;
	if (kind == Q_NEG && a->kind == Q_LITERAL && cJSON_IsNumber(a->lit)) {
		cJSON_SetNumberValue(a->lit, -a->lit->valuedouble);
		a->at = at;
		*out = a;
		return TWIN_OK;
	}
	*out = node_new(kind, 0, at);
	if (*out == NULL) {
		q_node_free(a);
		return nomem(p);
	}
	(*out)->a = a;
	return TWIN_OK;
}

static twin_err parse_unary(q_parser *p, q_node **out)
{
	if (is_punct(p, '-'))
		return parse_prefix(p, Q_NEG, parse_unary, out);
	return parse_primary(p, out);
}

/* The binary operator of one precedence level at the current token. */
typedef int (*q_binop)(const q_parser *p, q_kind *kind, int *op);

static int mul_op(const q_parser *p, q_kind *kind, int *op)
{
	*kind = Q_ARITH;
	*op = tok(p)->punct;
	return is_punct(p, '*') || is_punct(p, '/') || is_punct(p, '%');
}

static int add_op(const q_parser *p, q_kind *kind, int *op)
{
	*kind = Q_ARITH;
	*op = tok(p)->punct;
	return is_punct(p, '+') || is_punct(p, '-');
}

static int and_op(const q_parser *p, q_kind *kind, int *op)
{
	*kind = Q_AND;
	*op = 0;
	return is_word(p, "AND");
}

static int or_op(const q_parser *p, q_kind *kind, int *op)
{
	*kind = Q_OR;
	*op = 0;
	return is_word(p, "OR");
}

/* operand {op operand}, left-associative, built in a loop. */
static twin_err parse_chain(q_parser *p, q_level operand, q_binop binop, q_node **out)
{
	q_node *right, *n;
	q_kind kind;
	size_t at;
	int op;
	twin_err rc = operand(p, out);

	while (rc == TWIN_OK && binop(p, &kind, &op)) {
		at = tok(p)->at;
		rc = next(p);
		if (rc == TWIN_OK)
			rc = operand(p, &right);
		if (rc != TWIN_OK)
			break;
		n = node_new(kind, op, at);
		if (n == NULL) {
			q_node_free(right);
			rc = nomem(p);
			break;
		}
		n->a = *out;
		n->b = right;
		*out = n;
	}
	if (rc != TWIN_OK) {
		q_node_free(*out);
		*out = NULL;
	}
	return rc;
}

static twin_err parse_mul(q_parser *p, q_node **out)
{
	return parse_chain(p, parse_unary, mul_op, out);
}

static twin_err parse_add(q_parser *p, q_node **out)
{
	return parse_chain(p, parse_mul, add_op, out);
}

/* Comparison, IN or NIN at the current token: its kind and op. */
static int cmp_op(const q_parser *p, q_kind *kind, int *op)
{
	static const int punct[] = {'=', QP_NE, '<', '>', QP_LE, QP_GE};
	static const q_cmp cmp[] = {Q_EQ, Q_NE, Q_LT, Q_GT, Q_LE, Q_GE};

	*op = 0;
	*kind = is_word(p, "IN") ? Q_IN : Q_NIN;
	if (is_word(p, "IN") || is_word(p, "NIN"))
		return 1;
	*kind = Q_CMP;
	for (size_t i = 0; i < sizeof(punct) / sizeof(punct[0]); i++) {
		if (is_punct(p, punct[i])) {
			*op = (int)cmp[i];
			return 1;
		}
	}
	return 0;
}

static twin_err parse_in_list(q_parser *p, q_node **out)
{
	if (!is_punct(p, '['))
		return q_lex_expected(&p->lx, "a list", 0);
	return literal_node(p, out);
}

/* Comparisons do not chain: "a < b < c" would compare a boolean. */
static twin_err parse_cmp(q_parser *p, q_node **out)
{
	q_node *right = NULL, *n;
	q_kind kind;
	int op;
	size_t at;
	twin_err rc = parse_add(p, out);

	if (rc != TWIN_OK || !cmp_op(p, &kind, &op))
		return rc;
	at = tok(p)->at;
	rc = next(p);
	if (rc == TWIN_OK)
		rc = kind == Q_CMP ? parse_add(p, &right) : parse_in_list(p, &right);
	if (rc == TWIN_OK && (n = node_new(kind, op, at)) == NULL)
		rc = nomem(p);
	if (rc == TWIN_OK) {
		n->a = *out;
		n->b = right;
		*out = n;
		if (cmp_op(p, &kind, &op))
			rc = q_lex_fail(&p->lx, tok(p)->at,
			                "comparisons do not chain; combine them with AND");
	} else {
		q_node_free(right);
	}
	if (rc != TWIN_OK) {
		q_node_free(*out);
		*out = NULL;
	}
	return rc;
}

static twin_err parse_not(q_parser *p, q_node **out)
{
	if (is_word(p, "NOT"))
		return parse_prefix(p, Q_NOT, parse_not, out);
	return parse_cmp(p, out);
}

static twin_err parse_and(q_parser *p, q_node **out)
{
	return parse_chain(p, parse_not, and_op, out);
}

static twin_err parse_or(q_parser *p, q_node **out)
{
	return parse_chain(p, parse_and, or_op, out);
}

twin_err q_parse_expr(q_parser *p, q_node **out)
{
	return parse_or(p, out);
}
