/*
 * test_query_parse.c - the query parser (store/query_lex.c, query_expr.c,
 * query_parse.c) against PROTOCOL.md §8.1-§8.3 and §8.5, one test per rule.
 *
 * Shapes are asserted through a canonical print of the AST: the statement
 * with every item's output name spelled out ("deviceId AS deviceId") and the
 * WHERE clause as an S-expression, e.g. (AND (= tags.a "x") (NOT b)).
 * Inputs are copied into heap buffers of exactly their length, with no NUL
 * after them, so AddressSanitizer catches any read past len.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../store/query_ast.h"
#include "twin/json.h"
#include "twin/query.h"

/* ---- the canonical print ---- */

struct out {
	char buf[16384];
	size_t n;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->n, sizeof(o->buf) - o->n, fmt, ap);
	va_end(ap);
	assert_true(n >= 0 && (size_t)n < sizeof(o->buf) - o->n);
	o->n += (size_t)n;
}

/* Segments that would not read back as plain names are shown bracketed. */
static int plain_segment(const char *s)
{
	static const char *const reserved[] = {"select", "top", "from", "where", "group", "by",
	                                       "as",     "and", "or",   "not",   "in",    "nin"};

	if (strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_$0123456789") !=
	            strlen(s) ||
	    (s[0] >= '0' && s[0] <= '9'))
		return 0;
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
		if (strcasecmp(s, reserved[i]) == 0)
			return 0;
	}
	return 1;
}

static void put_path(struct out *o, const q_path *p)
{
	for (size_t i = 0; i < p->n; i++)
		put(o, plain_segment(p->seg[i]) ? "%s%s" : "%s[[%s]]", i ? "." : "", p->seg[i]);
}

static const char *const cmp_names[] = {
        [Q_EQ] = "=", [Q_NE] = "!=", [Q_LT] = "<", [Q_GT] = ">", [Q_LE] = "<=", [Q_GE] = ">="};

static const char *const func_names[] = {
        [Q_IS_DEFINED] = "IS_DEFINED", [Q_IS_NULL] = "IS_NULL",
        [Q_IS_BOOL] = "IS_BOOL",       [Q_IS_NUMBER] = "IS_NUMBER",
        [Q_IS_STRING] = "IS_STRING",   [Q_IS_OBJECT] = "IS_OBJECT",
        [Q_IS_ARRAY] = "IS_ARRAY",     [Q_IS_PRIMITIVE] = "IS_PRIMITIVE",
        [Q_STARTSWITH] = "STARTSWITH", [Q_ENDSWITH] = "ENDSWITH",
        [Q_CONTAINS] = "CONTAINS",
};

static void put_node(struct out *o, const q_node *n)
{
	char *text;

	switch (n->kind) {
	case Q_LITERAL:
		if (n->lit == NULL) {
			put(o, "undefined");
			break;
		}
		text = cJSON_PrintUnformatted(n->lit);
		put(o, "%s", text);
		cJSON_free(text);
		break;
	case Q_PATH:
		put_path(o, &n->path);
		break;
	case Q_FUNC:
		assert_true(n->nargs == 1 || n->nargs == 2);
		put(o, "(%s", func_names[n->op]);
		for (size_t i = 0; i < n->nargs; i++) {
			put(o, " ");
			put_node(o, n->args[i]);
		}
		put(o, ")");
		break;
	case Q_NEG:
	case Q_NOT:
		assert_null(n->b);
		put(o, "(%s ", n->kind == Q_NEG ? "neg" : "NOT");
		put_node(o, n->a);
		put(o, ")");
		break;
	default:
		if (n->kind == Q_ARITH)
			put(o, "(%c ", n->op);
		else if (n->kind == Q_CMP)
			put(o, "(%s ", cmp_names[n->op]);
		else
			put(o, "(%s ",
			    n->kind == Q_AND  ? "AND"
			    : n->kind == Q_OR ? "OR"
			    : n->kind == Q_IN ? "IN"
			                      : "NIN");
		put_node(o, n->a);
		put(o, " ");
		put_node(o, n->b);
		put(o, ")");
	}
}

static void put_query(struct out *o, const twin_query *q)
{
	static const char *const agg_names[] = {[Q_AGG_COUNT] = "COUNT",
	                                        [Q_AGG_AVG] = "AVG",
	                                        [Q_AGG_SUM] = "SUM",
	                                        [Q_AGG_MIN] = "MIN",
	                                        [Q_AGG_MAX] = "MAX"};
	int any_agg = 0;

	put(o, "SELECT ");
	if (q->top >= 0)
		put(o, "TOP %lld ", q->top);
	if (q->star)
		put(o, "*");
	for (size_t i = 0; i < q->nitems; i++) {
		const q_item *it = &q->items[i];

		put(o, "%s", i ? ", " : "");
		if (it->agg != Q_AGG_NONE) {
			put(o, "%s(", agg_names[it->agg]);
			put_path(o, &it->path);
			put(o, ")");
			any_agg = 1;
		} else {
			put_path(o, &it->path);
		}
		put(o, " AS %s", it->name);
	}
	assert_int_equal(q->aggregate, any_agg);
	assert_true(q->star ? q->nitems == 0 : q->nitems > 0);
	put(o, " FROM devices%s", q->modules ? ".modules" : "");
	if (q->where != NULL) {
		put(o, " WHERE ");
		put_node(o, q->where);
	}
	for (size_t i = 0; i < q->ngroup; i++) {
		put(o, i ? ", " : " GROUP BY ");
		put_path(o, &q->group[i]);
	}
}

/* ---- parsing helpers ---- */

static twin_err parse_len(const char *text, size_t len, twin_query **q, twin_error *e)
{
	char *copy = malloc(len ? len : 1);
	twin_err rc;

	assert_non_null(copy);
	memcpy(copy, text, len);
	rc = twin_query_parse(copy, len, q, e);
	free(copy);
	return rc;
}

static twin_query *accept_len(const char *text, size_t len)
{
	twin_error e = {0};
	twin_query *q = NULL;

	if (parse_len(text, len, &q, &e) != TWIN_OK)
		fail_msg("rejected: %.*s (%s)", (int)len, text, e.message);
	assert_non_null(q);
	assert_int_equal(strlen(q->text), len);
	assert_memory_equal(q->text, text, len);
	return q;
}

static twin_query *accept(const char *text)
{
	return accept_len(text, strlen(text));
}

/* The canonical print of a query that must parse. */
static const char *ast_of(const char *text)
{
	static struct out o;
	twin_query *q = accept(text);

	o.n = 0;
	o.buf[0] = '\0';
	put_query(&o, q);
	twin_query_free(q);
	return o.buf;
}

/* The S-expression of the WHERE condition cond. */
static const char *where_of(const char *cond)
{
	static char text[16384];
	const char *ast;

	snprintf(text, sizeof(text), "SELECT * FROM devices WHERE %s", cond);
	ast = ast_of(text);
	return ast + strlen("SELECT * FROM devices WHERE ");
}

#define AST(text, want)   assert_string_equal(ast_of(text), want)
#define WHERE(cond, want) assert_string_equal(where_of(cond), want)

static const char *reject_len(const char *text, size_t len)
{
	static twin_error e;
	twin_query *q = (twin_query *)&e; /* must be reset to NULL */
	twin_err rc;

	memset(&e, 0, sizeof(e));
	rc = parse_len(text, len, &q, &e);
	if (rc != TWIN_E_INVALID)
		fail_msg("not rejected as invalid (rc %d): %.*s", rc, (int)len, text);
	assert_null(q);
	assert_int_equal(e.err, TWIN_E_INVALID);
	assert_true(strlen(e.message) > 0);
	return e.message;
}

static const char *reject(const char *text)
{
	return reject_len(text, strlen(text));
}

static void assert_contains(const char *haystack, const char *needle)
{
	if (strstr(haystack, needle) == NULL)
		fail_msg("'%s' does not contain '%s'", haystack, needle);
}

/* text is refused with "Syntax error at position <pos>: ..." containing what. */
static void assert_error_at_len(const char *text, size_t len, size_t pos, const char *what)
{
	const char *msg = reject_len(text, len);
	char prefix[64];

	snprintf(prefix, sizeof(prefix), "Syntax error at position %zu: ", pos);
	if (strncmp(msg, prefix, strlen(prefix)) != 0)
		fail_msg("for %.*s: '%s' does not start with '%s'", (int)len, text, msg, prefix);
	assert_contains(msg, what);
	assert_true(msg[strlen(msg) - 1] == '.');
}

static void assert_error_at(const char *text, size_t pos, const char *what)
{
	assert_error_at_len(text, strlen(text), pos, what);
}

/* Offset of the first occurrence of needle in text (which must have one);
 * "" stands for the end of text. */
static size_t at_of(const char *text, const char *needle)
{
	const char *p = needle[0] ? strstr(text, needle) : text + strlen(text);

	assert_non_null(p);
	return (size_t)(p - text);
}

/* The error for the WHERE condition cond is at the first `needle` in it. */
static void assert_where_error(const char *cond, const char *needle, const char *what)
{
	char text[16384];

	snprintf(text, sizeof(text), "SELECT * FROM devices WHERE %s", cond);
	assert_error_at(text, strlen("SELECT * FROM devices WHERE ") + at_of(cond, needle), what);
}

/* A string of n copies of s (malloc'd). */
static char *repeat(const char *s, size_t n)
{
	size_t len = strlen(s);
	char *r = malloc(len * n + 1);

	assert_non_null(r);
	for (size_t i = 0; i < n; i++)
		memcpy(r + i * len, s, len);
	r[len * n] = '\0';
	return r;
}

/* ---- §8.5 and the statement ---- */

static void test_query_protocol_examples_parse(void **state)
{
	static const struct {
		const char *text, *ast;
	} ex[] = {
	        {"SELECT * FROM devices", "SELECT * FROM devices"},
	        {"SELECT * FROM devices WHERE tags.location.region = 'US'",
	         "SELECT * FROM devices WHERE (= tags.location.region \"US\")"},
	        {"SELECT * FROM devices WHERE tags.location.region = 'US' AND "
	         "properties.reported.telemetryConfig.sendFrequencyInSecs >= 60",
	         "SELECT * FROM devices WHERE (AND (= tags.location.region \"US\") (>= "
	         "properties.reported.telemetryConfig.sendFrequencyInSecs 60))"},
	        {"SELECT * FROM devices WHERE properties.reported.connectivity IN ['wired', "
	         "'wifi']",
	         "SELECT * FROM devices WHERE (IN properties.reported.connectivity "
	         "[\"wired\",\"wifi\"])"},
	        {"SELECT deviceId, properties.reported.fw AS fw FROM devices WHERE "
	         "IS_DEFINED(properties.reported.fw)",
	         "SELECT deviceId AS deviceId, properties.reported.fw AS fw FROM devices WHERE "
	         "(IS_DEFINED properties.reported.fw)"},
	        {"SELECT COUNT() AS total FROM devices", "SELECT COUNT() AS total FROM devices"},
	        {"SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS "
	         "numberOfDevices FROM devices GROUP BY properties.reported.telemetryConfig.status",
	         "SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS "
	         "numberOfDevices FROM devices GROUP BY "
	         "properties.reported.telemetryConfig.status"},
	        {"SELECT * FROM devices.modules WHERE properties.reported.status = 'scanning' AND "
	         "deviceId IN ['device1','device2']",
	         "SELECT * FROM devices.modules WHERE (AND (= properties.reported.status "
	         "\"scanning\") (IN deviceId [\"device1\",\"device2\"]))"},
	        {"SELECT TOP 2 DeviceId, LastActivityTime FROM devices WHERE STARTSWITH(deviceId, "
	         "'test')",
	         "SELECT TOP 2 DeviceId AS deviceId, LastActivityTime AS lastActivityTime FROM "
	         "devices WHERE (STARTSWITH deviceId \"test\")"},
	        {"SELECT deviceId FROM devices WHERE tags.[[group]].name = \"A\\\"B\"",
	         "SELECT deviceId AS deviceId FROM devices WHERE (= tags.[[group]].name "
	         "\"A\\\"B\")"},
	        {"SELECT AVG(properties.reported.temp) AS avgT, MAX(properties.reported.temp) AS "
	         "maxT FROM devices WHERE status = 'enabled'",
	         "SELECT AVG(properties.reported.temp) AS avgT, MAX(properties.reported.temp) AS "
	         "maxT FROM devices WHERE (= status \"enabled\")"},
	        {"SELECT deviceId FROM devices WHERE NOT IS_DEFINED(properties.reported.fw) OR "
	         "properties.reported.fw < '2.0'",
	         "SELECT deviceId AS deviceId FROM devices WHERE (OR (NOT (IS_DEFINED "
	         "properties.reported.fw)) (< properties.reported.fw \"2.0\"))"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(ex) / sizeof(ex[0]); i++)
		AST(ex[i].text, ex[i].ast);
}

static void test_query_defaults_without_optional_clauses(void **state)
{
	twin_query *q = accept("SELECT * FROM devices");

	(void)state;
	assert_int_equal(q->top, -1);
	assert_true(q->star);
	assert_int_equal(q->nitems, 0);
	assert_null(q->items);
	assert_false(q->aggregate);
	assert_false(q->modules);
	assert_null(q->where);
	assert_int_equal(q->ngroup, 0);
	assert_null(q->group);
	twin_query_free(q);
}

static void test_query_text_kept_nul_terminated(void **state)
{
	twin_query *q = accept("select *\n\tfrom devices  ");

	(void)state;
	assert_string_equal(q->text, "select *\n\tfrom devices  ");
	twin_query_free(q);
}

static void test_query_keywords_case_insensitive(void **state)
{
	(void)state;
	AST("select top 3 Count() from DEVICES.Modules where not a = 1 and b in [1] or c nin [2] "
	    "group by x",
	    "SELECT TOP 3 COUNT() AS count FROM devices.modules WHERE (OR (AND (NOT (= a 1)) (IN b "
	    "[1])) (NIN c [2])) GROUP BY x");
	AST("SeLeCt x As Y FrOm DeViCeS WhErE TRUE = False Or NULL = UnDeFiNeD GrOuP bY x",
	    "SELECT x AS Y FROM devices WHERE (OR (= true false) (= null undefined)) GROUP BY x");
	WHERE("is_defined(a) AND StartsWith(a, 'x')", "(AND (IS_DEFINED a) (STARTSWITH a \"x\"))");
}

static void test_query_whitespace_between_tokens(void **state)
{
	(void)state;
	AST("\r\n SELECT\ta\n.\rb\nFROM\r\ndevices\t.\tmodules WHERE(a)=(1)GROUP BY a . b ",
	    "SELECT a.b AS b FROM devices.modules WHERE (= a 1) GROUP BY a.b");
	AST("SELECT a,b FROM devices", "SELECT a AS a, b AS b FROM devices");
}

static void test_query_top_non_negative_integer(void **state)
{
	twin_query *q = accept("SELECT TOP 9223372036854775807 * FROM devices");

	(void)state;
	assert_int_equal(q->top, 9223372036854775807LL);
	twin_query_free(q);
	AST("SELECT TOP 0 * FROM devices", "SELECT TOP 0 * FROM devices");
	AST("SELECT TOP 007 * FROM devices", "SELECT TOP 7 * FROM devices");
	AST("SELECT TOP 0x10 * FROM devices", "SELECT TOP 16 * FROM devices");
}

static void test_query_top_not_a_number_refused(void **state)
{
	(void)state;
	assert_error_at("SELECT TOP -1 * FROM devices", 11,
	                "expected a non-negative integer after TOP, found '-'");
	assert_error_at("SELECT TOP 1.5 * FROM devices", 11,
	                "expected a non-negative integer after TOP, found '1.5'");
	assert_error_at("SELECT TOP 1e3 * FROM devices", 11, "found '1e3'");
	assert_error_at("SELECT TOP 'x' * FROM devices", 11, "found string 'x'");
	assert_error_at("SELECT TOP * FROM devices", 11, "found '*'");
	assert_error_at("SELECT TOP 9223372036854775808 * FROM devices", 11,
	                "expected a non-negative integer after TOP");
	assert_error_at("SELECT TOP", 10, "found end of query");
	/* TOP where a name was meant */
	assert_error_at("SELECT top FROM devices", 7, "write [[top]] to use it as a name");
	assert_error_at("SELECT Top.x FROM devices", 7, "write [[Top]]");
	AST("SELECT [[top]] FROM devices", "SELECT [[top]] AS top FROM devices");
}

static void test_query_source_devices_or_modules(void **state)
{
	(void)state;
	AST("SELECT * FROM Devices", "SELECT * FROM devices");
	AST("SELECT * FROM devices.MODULES", "SELECT * FROM devices.modules");
}

static void test_query_bad_source_refused(void **state)
{
	(void)state;
	assert_error_at("SELECT * FROM devices.jobs", 14,
	                "unknown collection 'devices.jobs'; expected devices or devices.modules");
	assert_error_at("SELECT * FROM foo WHERE a = 1", 14, "unknown collection 'foo'");
	assert_error_at("SELECT * FROM devices.", 22,
	                "expected modules after 'devices.', found end of query");
	assert_error_at("SELECT * FROM 'devices'", 14,
	                "expected devices or devices.modules, found string 'devices'");
	assert_error_at("SELECT * FROM", 13, "expected devices or devices.modules, found end");
	assert_error_at("SELECT * FROM [[devices]]", 14, "found '[[devices]]'");
	assert_error_at("SELECT * FROM devices.modules.x", 29,
	                "expected WHERE, GROUP BY or end of query, found '.'");
}

static void test_query_order_by_and_join_refused(void **state)
{
	(void)state;
	assert_error_at("SELECT * FROM devices ORDER BY deviceId", 22, "ORDER BY is not supported");
	assert_error_at("SELECT * FROM devices WHERE a = 1 order by a", 34,
	                "ORDER BY is not supported");
	assert_error_at("SELECT * FROM devices JOIN x", 22, "JOIN is not supported");
	assert_error_at("SELECT * FROM devices d JOIN x", 22,
	                "expected WHERE, GROUP BY or end of query, found 'd'");
}

/* ---- names, paths, reserved words ---- */

static void test_query_bracketed_keyword_name(void **state)
{
	(void)state;
	WHERE("tags.[[group]] = 1", "(= tags.[[group]] 1)");
	WHERE("[[select]].[[FROM]].[[where]] = 1", "(= [[select]].[[FROM]].[[where]] 1)");
	AST("SELECT tags.[[group]] FROM devices GROUP BY tags.[[group]]",
	    "SELECT tags.[[group]] AS group FROM devices GROUP BY tags.[[group]]");
	AST("SELECT a AS [[from]] FROM devices", "SELECT a AS from FROM devices");
}

static void test_query_bracketed_name_any_text(void **state)
{
	twin_query *q = accept("SELECT * FROM devices WHERE tags.[[a b.c]x 'é\"]] = 1");

	(void)state;
	assert_int_equal(q->where->a->path.n, 2);
	assert_string_equal(q->where->a->path.seg[1], "a b.c]x 'é\"");
	twin_query_free(q);
	/* the first ]] ends the name */
	assert_error_at("SELECT * FROM devices WHERE [[a]]] = 1", 33,
	                "expected an operator, GROUP BY or end of query, found ']'");
}

static void test_query_bracketed_name_empty_or_unterminated_refused(void **state)
{
	(void)state;
	assert_where_error("tags.[[]] = 1", "[[", "empty [[name]]");
	assert_where_error("tags.[[a] = 1", "[[", "unterminated [[name]]");
	assert_where_error("tags.[[a", "[[", "unterminated [[name]]");
}

static void test_query_keyword_as_plain_name_refused(void **state)
{
	static const char *const words[] = {"group", "select", "from", "where", "by", "and",
	                                    "or",    "not",    "in",   "nin",   "as", "top"};
	char text[128];

	(void)state;
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		char want[64];

		snprintf(text, sizeof(text), "SELECT * FROM devices WHERE tags.%s = 1", words[i]);
		snprintf(want, sizeof(want), "write [[%s]] to use it as a name", words[i]);
		assert_error_at(text, 33, want);
		assert_error_at(text, 33, "expected a name after '.', found reserved word");
	}
	assert_error_at("SELECT * FROM devices WHERE tags.Group.x = 1", 33, "write [[Group]]");
	assert_error_at("SELECT * FROM devices WHERE group = 1", 28,
	                "expected an expression, found reserved word 'group'; write [[group]]");
	assert_error_at("SELECT tags.from FROM devices", 12, "write [[from]]");
	assert_error_at("SELECT group FROM devices", 7,
	                "expected '*', a property path or an aggregate, found reserved word "
	                "'group'");
	assert_error_at("SELECT a AS by FROM devices", 12,
	                "expected an alias after AS, found reserved word 'by'");
	assert_error_at("SELECT a FROM devices GROUP BY tags.by", 36, "write [[by]]");
}

static void test_query_contextual_words_are_plain_names(void **state)
{
	(void)state;
	/* Aggregate, function, collection and literal words are special only
	 * where the grammar expects them. */
	WHERE("tags.count = properties.reported.min", "(= tags.count properties.reported.min)");
	WHERE("devices.modules.is_null = tags.null", "(= devices.modules.is_null tags.null)");
	WHERE("max + avg", "(+ max avg)");
	AST("SELECT count, tags.true AS sum FROM devices",
	    "SELECT count AS count, tags.true AS sum FROM devices");
	AST("SELECT order FROM devices", "SELECT order AS order FROM devices");
}

static void test_query_name_characters(void **state)
{
	(void)state;
	WHERE("$a._b.c9.$metadata.$lastUpdated = 1", "(= $a._b.c9.$metadata.$lastUpdated 1)");
	assert_where_error("tags.9a = 1", "9a", "invalid number");
	assert_where_error("tags. = 1", "=", "expected a name after '.', found '='");
	assert_where_error("tags..a = 1", ".a", "expected a name after '.', found '.'");
	assert_where_error("tags.'a' = 1", "'a'", "found string 'a'");
}

/* ---- select items and output names ---- */

static void test_query_output_names(void **state)
{
	(void)state;
	AST("SELECT properties.reported.fw, tags.a.B, x AS y FROM devices",
	    "SELECT properties.reported.fw AS fw, tags.a.B AS B, x AS y FROM devices");
	/* a single system name in canonical case, whatever is written */
	AST("SELECT DEVICEID, moduleid, ETag, deviceetag, Version, STATUS, statusreason, "
	    "STATUSUPDATETIME, connectionstate, lastactivitytime, CLOUDTODEVICEMESSAGECOUNT, "
	    "authenticationtype, X509THUMBPRINT, modelid, Capabilities, TAGS, Properties FROM "
	    "devices",
	    "SELECT DEVICEID AS deviceId, moduleid AS moduleId, ETag AS etag, deviceetag AS "
	    "deviceEtag, Version AS version, STATUS AS status, statusreason AS statusReason, "
	    "STATUSUPDATETIME AS statusUpdateTime, connectionstate AS connectionState, "
	    "lastactivitytime AS lastActivityTime, CLOUDTODEVICEMESSAGECOUNT AS "
	    "cloudToDeviceMessageCount, authenticationtype AS authenticationType, X509THUMBPRINT "
	    "AS x509Thumbprint, modelid AS modelId, Capabilities AS capabilities, TAGS AS tags, "
	    "Properties AS properties FROM devices");
	/* only the top level is canonical; an alias is kept as written */
	AST("SELECT tags.DeviceId, deviceId AS DEVICEID, [[deviceid]] FROM devices",
	    "SELECT tags.DeviceId AS DeviceId, deviceId AS DEVICEID, deviceid AS deviceId FROM "
	    "devices");
	AST("SELECT Properties.Reported FROM devices",
	    "SELECT Properties.Reported AS Reported FROM devices");
}

static void test_query_aggregate_output_names(void **state)
{
	(void)state;
	AST("SELECT COUNT(), AVG(a), SUM(b), MIN(c), MAX(d) FROM devices",
	    "SELECT COUNT() AS count, AVG(a) AS avg, SUM(b) AS sum, MIN(c) AS min, MAX(d) AS max "
	    "FROM devices");
	AST("SELECT count ( ) AS n, Max(tags.[[a b]]) FROM devices",
	    "SELECT COUNT() AS n, MAX(tags.[[a b]]) AS max FROM devices");
}

static void test_query_duplicate_output_names_refused(void **state)
{
	(void)state;
	assert_error_at("SELECT deviceId, DeviceId FROM devices", 17,
	                "duplicate output name 'deviceId'; give one of them an alias with AS");
	assert_error_at("SELECT tags.a, properties.reported.a FROM devices", 15,
	                "duplicate output name 'a'");
	assert_error_at("SELECT x AS n, COUNT() AS n FROM devices GROUP BY x", 15,
	                "duplicate output name 'n'");
	assert_error_at("SELECT COUNT(), COUNT() FROM devices", 16,
	                "duplicate output name 'count'");
	assert_error_at("SELECT tags.count, COUNT() FROM devices GROUP BY tags.count", 19,
	                "duplicate output name 'count'");
	/* names differ by case: two members */
	AST("SELECT tags.a, tags.A FROM devices", "SELECT tags.a AS a, tags.A AS A FROM devices");
	AST("SELECT tags.a, tags.a AS b FROM devices",
	    "SELECT tags.a AS a, tags.a AS b FROM devices");
}

static void test_query_star_with_other_items_refused(void **state)
{
	(void)state;
	assert_error_at("SELECT *, deviceId FROM devices", 8,
	                "'*' cannot be combined with other select items");
	assert_error_at("SELECT deviceId, * FROM devices", 17,
	                "'*' cannot be combined with other select items");
	assert_error_at("SELECT * AS x FROM devices", 9, "expected FROM, found 'AS'");
}

static void test_query_select_item_syntax_refused(void **state)
{
	(void)state;
	assert_error_at(
	        "SELECT FROM devices", 7,
	        "expected '*', a property path or an aggregate, found reserved word 'FROM'");
	assert_error_at("SELECT 1 FROM devices", 7,
	                "expected '*', a property path or an aggregate, found '1'");
	assert_error_at("SELECT a, FROM devices", 10,
	                "expected a property path or an aggregate, found reserved word 'FROM'");
	assert_error_at("SELECT a b FROM devices", 9, "expected FROM, found 'b'");
	assert_error_at("SELECT a AS FROM devices", 12, "expected an alias after AS");
	assert_error_at("SELECT a AS 'x' FROM devices", 12,
	                "expected an alias after AS, found string 'x'");
	assert_error_at("SELECT a + 1 FROM devices", 9, "expected FROM, found '+'");
	assert_error_at("SELECT IS_DEFINED(a) FROM devices", 7,
	                "'IS_DEFINED' is not an aggregate; expected COUNT, AVG, SUM, MIN or MAX");
}

static void test_query_aggregate_arguments_checked(void **state)
{
	(void)state;
	assert_error_at("SELECT COUNT(x) FROM devices", 13,
	                "expected ')' (COUNT takes no argument), found 'x'");
	assert_error_at("SELECT COUNT(*) FROM devices", 13, "COUNT takes no argument");
	assert_error_at("SELECT AVG() FROM devices", 11, "expected a property path, found ')'");
	assert_error_at("SELECT SUM(1) FROM devices", 11, "expected a property path, found '1'");
	assert_error_at("SELECT MIN(a, b) FROM devices", 12, "expected ')', found ','");
	assert_error_at("SELECT MAX(a + 1) FROM devices", 13, "expected ')', found '+'");
	assert_error_at("SELECT MAX(a", 12, "expected ')', found end of query");
}

/* ---- GROUP BY and aggregates ---- */

static void test_query_group_by_paths(void **state)
{
	(void)state;
	AST("SELECT tags.a, properties.reported.b, COUNT() FROM devices GROUP BY tags.a, "
	    "properties.reported.b",
	    "SELECT tags.a AS a, properties.reported.b AS b, COUNT() AS count FROM devices GROUP "
	    "BY tags.a, properties.reported.b");
	/* grouping without aggregates: distinct values */
	AST("SELECT status FROM devices.modules GROUP BY status",
	    "SELECT status AS status FROM devices.modules GROUP BY status");
	/* aggregates only, paths grouped but not selected */
	AST("SELECT COUNT() FROM devices WHERE a = 1 GROUP BY a, b",
	    "SELECT COUNT() AS count FROM devices WHERE (= a 1) GROUP BY a, b");
}

static void test_query_group_by_compares_with_name_case_rules(void **state)
{
	(void)state;
	/* top-level system names and desired/reported ignore case (§8.2) */
	AST("SELECT DeviceId, Properties.Reported.x FROM devices GROUP BY deviceId, "
	    "properties.reported.x",
	    "SELECT DeviceId AS deviceId, Properties.Reported.x AS x FROM devices GROUP BY "
	    "deviceId, properties.reported.x");
	AST("SELECT TAGS.a FROM devices GROUP BY tags.a",
	    "SELECT TAGS.a AS a FROM devices GROUP BY tags.a");
	/* below tags, desired and reported names are case-sensitive */
	assert_error_at("SELECT tags.A FROM devices GROUP BY tags.a", 7,
	                "with GROUP BY, select only grouped paths and aggregates");
	assert_error_at("SELECT properties.reported.X FROM devices GROUP BY properties.reported.x",
	                7, "with GROUP BY");
	assert_error_at("SELECT tags.reported FROM devices GROUP BY tags.REPORTED", 7,
	                "with GROUP BY");
}

static void test_query_group_by_requires_grouped_items(void **state)
{
	(void)state;
	assert_error_at("SELECT tags.a, COUNT(), tags.b FROM devices GROUP BY tags.a", 24,
	                "with GROUP BY, select only grouped paths and aggregates");
	assert_error_at("SELECT tags.a.b FROM devices GROUP BY tags.a", 7, "with GROUP BY");
	assert_error_at("SELECT tags FROM devices GROUP BY tags.a", 7, "with GROUP BY");
}

static void test_query_group_by_with_star_refused(void **state)
{
	(void)state;
	assert_error_at("SELECT * FROM devices GROUP BY tags.a", 7,
	                "SELECT * cannot be used with GROUP BY");
}

static void test_query_group_by_syntax_refused(void **state)
{
	(void)state;
	assert_error_at("SELECT * FROM devices GROUP tags.a", 28, "expected BY, found 'tags'");
	assert_error_at("SELECT a FROM devices GROUP BY", 30,
	                "expected a property path, found end of query");
	assert_error_at("SELECT a FROM devices GROUP BY a,", 33, "found end of query");
	assert_error_at("SELECT a FROM devices GROUP BY 'a'", 31, "expected a property path");
	assert_error_at("SELECT a FROM devices GROUP BY a WHERE a = 1", 33,
	                "expected ',' or end of query, found 'WHERE'");
	assert_error_at("SELECT COUNT() FROM devices GROUP BY COUNT()", 42,
	                "expected ',' or end of query, found '('");
}

static void test_query_aggregates_without_group_by(void **state)
{
	twin_query *q = accept("SELECT COUNT() AS n, AVG(x) FROM devices");

	(void)state;
	assert_true(q->aggregate);
	assert_int_equal(q->items[0].agg, Q_AGG_COUNT);
	assert_int_equal(q->items[0].path.n, 0);
	assert_int_equal(q->items[1].agg, Q_AGG_AVG);
	assert_string_equal(q->items[1].path.seg[0], "x");
	twin_query_free(q);
	q = accept("SELECT x FROM devices");
	assert_false(q->aggregate);
	assert_int_equal(q->items[0].agg, Q_AGG_NONE);
	twin_query_free(q);
}

static void test_query_aggregates_mixed_with_paths_need_group_by(void **state)
{
	(void)state;
	assert_error_at("SELECT deviceId, COUNT() FROM devices", 7,
	                "property paths need GROUP BY when aggregates are selected");
	assert_error_at("SELECT COUNT(), tags.x FROM devices WHERE a = 1", 16,
	                "property paths need GROUP BY");
}

static void test_query_aggregate_in_where_refused(void **state)
{
	(void)state;
	assert_where_error("COUNT() > 1", "COUNT",
	                   "aggregate COUNT() is only allowed in the select list");
	assert_where_error("a = 1 AND avg(x) > 1", "avg", "aggregate avg() is only allowed");
}

/* ---- expressions ---- */

static void test_query_precedence_and_over_or(void **state)
{
	(void)state;
	WHERE("a OR b AND c", "(OR a (AND b c))");
	WHERE("a AND b OR c", "(OR (AND a b) c)");
	WHERE("a OR b OR c", "(OR (OR a b) c)");
	WHERE("a AND b AND c", "(AND (AND a b) c)");
}

static void test_query_precedence_not_over_and(void **state)
{
	(void)state;
	WHERE("NOT a AND b", "(AND (NOT a) b)");
	WHERE("NOT NOT a OR NOT b", "(OR (NOT (NOT a)) (NOT b))");
}

static void test_query_precedence_comparison_over_not(void **state)
{
	(void)state;
	WHERE("NOT a = 1", "(NOT (= a 1))");
	WHERE("NOT a IN [1]", "(NOT (IN a [1]))");
	/* NOT may not appear inside a comparison */
	assert_where_error("a = NOT b", "NOT", "expected an expression, found reserved word 'NOT'");
}

static void test_query_precedence_arithmetic_over_comparison(void **state)
{
	(void)state;
	WHERE("a + 1 < b * 2", "(< (+ a 1) (* b 2))");
	WHERE("a - 1 IN [1, 2]", "(IN (- a 1) [1,2])");
	WHERE("a + b * c - d / e % f", "(- (+ a (* b c)) (% (/ d e) f))");
	WHERE("a - b - c", "(- (- a b) c)");
	WHERE("a / b * c", "(* (/ a b) c)");
}

static void test_query_precedence_unary_minus_highest(void **state)
{
	(void)state;
	WHERE("-a * b = -c - -d", "(= (* (neg a) b) (- (neg c) (neg d)))");
	WHERE("a-1 = a - 1", "(= (- a 1) (- a 1))");
}

static void test_query_negative_number_is_a_literal(void **state)
{
	twin_query *q = accept("SELECT * FROM devices WHERE a = -5");

	(void)state;
	assert_int_equal(q->where->b->kind, Q_LITERAL);
	assert_true(q->where->b->lit->valuedouble == -5);
	assert_int_equal(q->where->b->at, 32);
	twin_query_free(q);
	WHERE("a = - 1.5e1", "(= a -15)");
	WHERE("a = --5", "(= a 5)");
	WHERE("a = -(5)", "(= a -5)");
	WHERE("a = -'x'", "(= a (neg \"x\"))");
	WHERE("a = -true", "(= a (neg true))");
	WHERE("a = -[1]", "(= a (neg [1]))");
}

static void test_query_parentheses_override_precedence(void **state)
{
	(void)state;
	WHERE("(a OR b) AND c", "(AND (OR a b) c)");
	WHERE("a * (b + c)", "(* a (+ b c))");
	WHERE("NOT (a) = (1)", "(NOT (= a 1))");
	WHERE("((((a))))", "a");
	assert_where_error("(a = 1", "", "expected an operator or ')', found end of query");
	assert_where_error("(a = 1 b", "b", "expected an operator or ')', found 'b'");
	assert_where_error("()", ")", "expected an expression, found ')'");
	assert_where_error("a = 1)", ")", "expected an operator, GROUP BY or end of query");
}

static void test_query_every_comparison_operator(void **state)
{
	(void)state;
	WHERE("a = 1 AND a != 1 AND a <> 1 AND a < 1 AND a > 1 AND a <= 1 AND a >= 1",
	      "(AND (AND (AND (AND (AND (AND (= a 1) (!= a 1)) (!= a 1)) (< a 1)) (> a 1)) (<= a "
	      "1)) "
	      "(>= a 1))");
	WHERE("a=1 AND a!=1 AND a<>1 AND a<1 AND a>1 AND a<=1 AND a>=1",
	      "(AND (AND (AND (AND (AND (AND (= a 1) (!= a 1)) (!= a 1)) (< a 1)) (> a 1)) (<= a "
	      "1)) "
	      "(>= a 1))");
	assert_where_error("a == 1", "= 1", "expected an expression, found '='");
	assert_where_error("a ! 1", "!", "unexpected character '!'");
	assert_where_error("a =< 1", "<", "expected an expression, found '<'");
}

static void test_query_every_arithmetic_operator(void **state)
{
	twin_query *q = accept("SELECT * FROM devices WHERE a + b - c * d / e % f = 0");
	const q_node *n = q->where->a;

	(void)state;
	assert_int_equal(n->kind, Q_ARITH);
	assert_int_equal(n->op, '-');
	assert_int_equal(n->a->op, '+');
	assert_int_equal(n->b->op, '%');
	assert_int_equal(n->b->a->op, '/');
	assert_int_equal(n->b->a->a->op, '*');
	twin_query_free(q);
}

static void test_query_comparisons_do_not_chain(void **state)
{
	(void)state;
	assert_where_error("a < b < c", "< c", "comparisons do not chain; combine them with AND");
	assert_where_error("a = 1 IN [1]", "IN", "comparisons do not chain");
	assert_where_error("a IN [1] = true", "=", "comparisons do not chain");
	WHERE("(a < b) = true", "(= (< a b) true)");
}

static void test_query_in_and_nin_lists(void **state)
{
	twin_query *q =
	        accept("SELECT * FROM devices WHERE a NIN ['x', -2, 0x1F, true, false, null]");

	(void)state;
	assert_int_equal(q->where->kind, Q_NIN);
	assert_int_equal(q->where->b->kind, Q_LITERAL);
	assert_true(cJSON_IsArray(q->where->b->lit));
	twin_query_free(q);
	WHERE("a NIN ['x', -2, 0x1F, true, false, null]", "(NIN a [\"x\",-2,31,true,false,null])");
	WHERE("a IN [1]", "(IN a [1])");
	WHERE("a in[ - 1.5 ,\"y\" ]", "(IN a [-1.5,\"y\"])");
	WHERE("[1, 2] = a", "(= [1,2] a)");
}

static void test_query_list_must_hold_literals(void **state)
{
	(void)state;
	assert_where_error("a IN b", "b", "expected a list, found 'b'");
	assert_where_error("a IN ('x')", "(", "expected a list, found '('");
	assert_where_error("a IN []", "]", "expected a literal, found ']'");
	assert_where_error("a IN [b]", "b", "expected a literal, found 'b'");
	assert_where_error("a IN [1 + 2]", "+", "expected ',' or ']', found '+'");
	assert_where_error("a IN [1,]", "]", "expected a literal, found ']'");
	assert_where_error("a IN [1", "", "expected ',' or ']', found end of query");
	assert_where_error("a IN [undefined]", "undefined", "undefined is not allowed in a list");
	assert_where_error("a IN [-'x']", "'x'", "expected a number after '-', found string 'x'");
	assert_where_error("a IN [ [1] ]", "[1]", "expected a literal, found '['");
	assert_where_error("a IN [[1]]", "[[", "expected a list, found '[[1]]'");
}

static void test_query_literals_true_false_null_undefined(void **state)
{
	twin_query *q = accept("SELECT * FROM devices WHERE a = undefined");

	(void)state;
	assert_int_equal(q->where->b->kind, Q_LITERAL);
	assert_null(q->where->b->lit);
	twin_query_free(q);
	WHERE("true AND NOT false OR null = Undefined",
	      "(OR (AND true (NOT false)) (= null undefined))");
	WHERE("[[true]] = 1", "(= true 1)");
	assert_where_error("true.x = 1", ".", "expected an operator, GROUP BY or end of query");
}

static void test_query_decimal_numbers(void **state)
{
	(void)state;
	WHERE("a = 0", "(= a 0)");
	WHERE("a = 007", "(= a 7)");
	WHERE("a = 1.25", "(= a 1.25)");
	WHERE("a = 1e3", "(= a 1000)");
	WHERE("a = 25E-1", "(= a 2.5)");
	WHERE("a = 1.5e+2", "(= a 150)");
	WHERE("a = 1e-400", "(= a 0)");
	WHERE("a = 123456789012345678901234567890", "(= a 1.2345678901234568e+29)");
	WHERE("a=1+2", "(= a (+ 1 2))");
}

static void test_query_hex_numbers(void **state)
{
	twin_query *q = accept("SELECT * FROM devices WHERE a = 0x20000000000000");

	(void)state;
	assert_true(q->where->b->lit->valuedouble == 9007199254740992.0);
	twin_query_free(q);
	WHERE("a = 0x0", "(= a 0)");
	WHERE("a = 0xff + 0XAb", "(= a (+ 255 171))");
	assert_where_error("a = 0x20000000000001", "0x", "number out of range");
	assert_where_error("a = 0x", "0x", "invalid number");
	assert_where_error("a = 0xg", "0x", "invalid number");
	assert_where_error("a = 0x1g", "0x", "invalid number");
}

static void test_query_bad_numbers_refused(void **state)
{
	(void)state;
	assert_where_error("a = 1.", "1.", "invalid number");
	assert_where_error("a = 1.e5", "1.", "invalid number");
	assert_where_error("a = 1e", "1e", "invalid number");
	assert_where_error("a = 1e+", "1e", "invalid number");
	assert_where_error("a = 12abc", "12", "invalid number");
	assert_where_error("a = 1e400", "1e", "number out of range");
	assert_where_error("a = .5", ".", "expected an expression, found '.'");
}

static void test_query_string_escapes_single_quotes(void **state)
{
	twin_query *q = accept("SELECT * FROM devices WHERE a = 'it\\'s \\\"x\\\" \\\\ \\/ "
	                       "\\b\\f\\n\\r\\t \"'");

	(void)state;
	assert_string_equal(q->where->b->lit->valuestring, "it's \"x\" \\ / \b\f\n\r\t \"");
	twin_query_free(q);
}

static void test_query_string_escapes_double_quotes(void **state)
{
	twin_query *q = accept("SELECT * FROM devices WHERE a = \"it\\'s \\\"x\\\" \\\\ \\/ "
	                       "\\b\\f\\n\\r\\t '\"");

	(void)state;
	assert_string_equal(q->where->b->lit->valuestring, "it's \"x\" \\ / \b\f\n\r\t '");
	twin_query_free(q);
	WHERE("a = ''", "(= a \"\")");
	WHERE("a = \"\"", "(= a \"\")");
}

static void test_query_string_unicode_escapes(void **state)
{
	twin_query *q =
	        accept("SELECT * FROM devices WHERE a = '\\u0041\\u00e9\\u20AC\\ud83d\\ude00é'");

	(void)state;
	assert_string_equal(q->where->b->lit->valuestring,
	                    "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xc3\xa9");
	twin_query_free(q);
}

static void test_query_string_bad_escapes_refused(void **state)
{
	(void)state;
	assert_where_error("a = 'x\\q'", "\\q", "invalid escape '\\q'");
	assert_where_error("a = 'x\\u00'", "\\u", "invalid \\u escape");
	assert_where_error("a = 'x\\u00G0'", "\\u", "invalid \\u escape");
	assert_where_error("a = 'x\\u0000'", "\\u", "\\u0000 is not allowed");
	assert_where_error("a = 'x\\ud83d'", "\\u", "lone high surrogate");
	assert_where_error("a = 'x\\ud83d\\u0041'", "\\u", "lone high surrogate");
	assert_where_error("a = 'x\\ude00'", "\\u", "lone low surrogate");
	assert_where_error("a = 'x\\\xc3\xa9'", "\\", "invalid escape.");
}

static void test_query_unterminated_string_refused(void **state)
{
	(void)state;
	assert_where_error("a = 'abc", "'", "unterminated string");
	assert_where_error("a = \"abc'", "\"", "unterminated string");
	assert_where_error("a = 'abc\\'", "'", "unterminated string");
}

static void test_query_every_function(void **state)
{
	twin_query *q;

	(void)state;
	WHERE("IS_DEFINED(a) AND IS_NULL(a) AND IS_BOOL(a) AND IS_NUMBER(a)",
	      "(AND (AND (AND (IS_DEFINED a) (IS_NULL a)) (IS_BOOL a)) (IS_NUMBER a))");
	WHERE("is_string(a) OR is_object(a) OR is_array(a) OR is_primitive(a)",
	      "(OR (OR (OR (IS_STRING a) (IS_OBJECT a)) (IS_ARRAY a)) (IS_PRIMITIVE a))");
	WHERE("STARTSWITH(a, 'x') AND EndsWith(a, 'y') AND contains(a + 'z', b)",
	      "(AND (AND (STARTSWITH a \"x\") (ENDSWITH a \"y\")) (CONTAINS (+ a \"z\") b))");
	WHERE("IS_DEFINED(NOT a = 1 OR b)", "(IS_DEFINED (OR (NOT (= a 1)) b))");
	q = accept("SELECT * FROM devices WHERE contains ( a , 'b' )");
	assert_int_equal(q->where->kind, Q_FUNC);
	assert_int_equal(q->where->op, Q_CONTAINS);
	assert_int_equal(q->where->nargs, 2);
	assert_null(q->where->a);
	assert_int_equal(q->where->at, 28);
	twin_query_free(q);
}

static void test_query_function_arg_count_checked(void **state)
{
	(void)state;
	assert_where_error("IS_DEFINED()", "IS_", "IS_DEFINED takes 1 argument, found 0");
	assert_where_error("a AND is_null(a, b)", "is_", "IS_NULL takes 1 argument, found 2");
	assert_where_error("STARTSWITH(a)", "START", "STARTSWITH takes 2 arguments, found 1");
	assert_where_error("ENDSWITH(a, b, c, d)", "END", "ENDSWITH takes 2 arguments, found 4");
	assert_where_error("CONTAINS()", "CON", "CONTAINS takes 2 arguments, found 0");
	assert_where_error("IS_NULL(a,)", ")", "expected an expression, found ')'");
	assert_where_error("IS_NULL(a b)", "b", "expected an operator, ',' or ')', found 'b'");
	assert_where_error("IS_NULL(a", "", "expected an operator, ',' or ')', found end");
}

static void test_query_unknown_function_refused(void **state)
{
	(void)state;
	assert_where_error("a = 1 AND LOWER(a) = 'x'", "LOWER", "unknown function 'LOWER'");
	assert_where_error("IS_DEFINED (a) AND is_def(a)", "is_def(", "unknown function 'is_def'");
	assert_where_error("[[IS_NULL]](a)", "(", "expected an operator, GROUP BY or end");
}

/* ---- errors: positions and whole-text checks ---- */

static void test_query_error_position_missing_from(void **state)
{
	(void)state;
	assert_error_at("SELECT * WHERE a = 1", 9, "expected FROM, found 'WHERE'.");
	assert_error_at("SELECT deviceId devices", 16, "expected FROM, found 'devices'");
}

static void test_query_error_position_unexpected_end(void **state)
{
	(void)state;
	assert_error_at("", 0, "expected SELECT, found end of query");
	assert_error_at("   ", 3, "expected SELECT, found end of query");
	assert_error_at("SELECT", 6, "found end of query");
	assert_error_at("SELECT *", 8, "expected FROM, found end of query");
	assert_error_at("SELECT * FROM devices WHERE", 27, "expected an expression, found end");
	assert_error_at("SELECT * FROM devices WHERE a =", 31, "expected an expression, found end");
	assert_error_at("SELECT * FROM devices WHERE a AND", 33, "found end of query");
	assert_error_at("SELECT * FROM devices WHERE tags.", 33,
	                "expected a name after '.', found end of query");
}

static void test_query_error_position_unexpected_token(void **state)
{
	(void)state;
	assert_error_at("UPDATE devices", 0, "expected SELECT, found 'UPDATE'");
	assert_error_at("SELECT * FROM devices WHERE a = 1 b = 2", 34,
	                "expected an operator, GROUP BY or end of query, found 'b'");
	assert_error_at("SELECT * FROM devices WHERE a = 'x' 'y'", 36,
	                "expected an operator, GROUP BY or end of query, found string 'y'");
	assert_error_at("SELECT * FROM devices WHERE a = 1 # x", 34, "unexpected character '#'");
	assert_error_at("SELECT * FROM devices WHERE a = 1 \x01", 34, "unexpected character 0x01");
	assert_error_at("SELECT * FROM devices WHERE a = \xc3\xa9", 32, "unexpected character 'é'");
	assert_error_at("SELECT * FROM devices WHERE a = {}", 32, "unexpected character '{'");
}

/* A bad token is reported wherever it comes, not the construct before it. */
static void test_query_token_error_reported_where_it_is(void **state)
{
	(void)state;
	assert_error_at("SELECT TOP 'x", 11, "unterminated string");
	assert_error_at("SELECT a, 'x", 10, "unterminated string");
	assert_error_at("SELECT a AS 12x FROM devices", 12, "invalid number");
	assert_error_at("SELECT * FROM devices.'x", 22, "unterminated string");
	assert_error_at("SELECT * FROM devices WHERE a IN [- 'x", 36, "unterminated string");
	assert_error_at("SELECT * FROM devices WHERE a IN [1]'x", 36, "unterminated string");
	assert_error_at("SELECT * FROM devices WHERE a IN [1, 1x]", 37, "invalid number");
	assert_error_at("SELECT * FROM devices WHERE IS_NULL(1x)", 36, "invalid number");
	assert_error_at("SELECT a FROM devices GROUP BY a.'x", 33, "unterminated string");
}

static void test_query_error_quotes_long_tokens_cut(void **state)
{
	char *name = repeat("x", 100);
	char text[256];
	const char *msg;

	(void)state;
	snprintf(text, sizeof(text), "SELECT * FROM devices WHERE a = 1 %s", name);
	msg = reject(text);
	assert_contains(msg, "found 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'.");
	free(name);
	/* cut before a character that would not fit whole */
	name = repeat("\xc3\xa9", 30);
	snprintf(text, sizeof(text), "SELECT * FROM devices WHERE a = 1 [[x%s]]", name);
	msg = reject(text);
	name[36] = '\0';
	snprintf(text, sizeof(text), "found '[[x%s...'.", name);
	assert_contains(msg, text);
	assert_true(twin_utf8_valid(msg, strlen(msg)));
	free(name);
}

static void test_query_error_position_counts_characters(void **state)
{
	(void)state;
	/* 'é' and '€' are 2 and 3 bytes, one character each */
	assert_error_at("SELECT * FROM devices WHERE a = 'é€' b", 37, "found 'b'");
	assert_error_at("SELECT * FROM devices WHERE tags.[[é€]].group = 1", 40, "write [[group]]");
	/* and a 4-byte one */
	assert_error_at("SELECT * FROM devices WHERE a = '\xf0\x9f\x98\x80' b", 36, "found 'b'");
}

static void test_query_text_too_long_refused(void **state)
{
	const char *head = "SELECT * FROM devices WHERE a = '";
	size_t fill = TWIN_QUERY_TEXT_MAX - strlen(head) - 1;
	char *pad = repeat("x", fill + 1);
	char *text = malloc(TWIN_QUERY_TEXT_MAX + 2);
	twin_query *q;
	const char *msg;

	(void)state;
	assert_non_null(text);
	snprintf(text, TWIN_QUERY_TEXT_MAX + 2, "%s%.*s'", head, (int)fill, pad);
	assert_int_equal(strlen(text), TWIN_QUERY_TEXT_MAX);
	q = accept(text);
	twin_query_free(q);
	snprintf(text, TWIN_QUERY_TEXT_MAX + 2, "%s%.*s'", head, (int)fill + 1, pad);
	msg = reject(text);
	assert_string_equal(msg, "Query text is longer than 8192 characters.");
	free(pad);
	free(text);
}

static void test_query_text_limit_counts_characters(void **state)
{
	const char *head = "SELECT * FROM devices WHERE a = '";
	size_t fill = TWIN_QUERY_TEXT_MAX - strlen(head) - 1;
	char *pad = repeat("\xe2\x82\xac", fill + 1); /* € */
	char *text = malloc(4 * TWIN_QUERY_TEXT_MAX + 1);
	size_t n;

	(void)state;
	assert_non_null(text);
	n = (size_t)snprintf(text, 4 * TWIN_QUERY_TEXT_MAX, "%s%.*s'", head, (int)(3 * fill), pad);
	twin_query_free(accept_len(text, n));
	n = (size_t)snprintf(text, 4 * TWIN_QUERY_TEXT_MAX, "%s%.*s'", head, (int)(3 * fill + 3),
	                     pad);
	assert_string_equal(reject_len(text, n), "Query text is longer than 8192 characters.");
	free(pad);
	free(text);
	text = repeat(" ", 4 * TWIN_QUERY_TEXT_MAX + 1);
	assert_string_equal(reject(text), "Query text is longer than 8192 characters.");
	free(text);
}

static void test_query_invalid_utf8_refused(void **state)
{
	(void)state;
	assert_error_at("SELECT * FROM devices WHERE a = '\xff'", 33, "invalid UTF-8");
	assert_error_at("SELECT * FROM devices WHERE a = 'é\xc3'", 34, "invalid UTF-8");
	assert_error_at("SELECT * FROM devices WHERE [[\xed\xa0\x80]] = 1", 30, "invalid UTF-8");
	assert_error_at("SELECT * FROM devices WHERE a = '\xc0\xaf'", 33, "invalid UTF-8");
	assert_error_at("SELECT * FROM devices WHERE a = '\xe2\x82", 33, "invalid UTF-8");
	/* whole-text check: found even after a syntax error */
	assert_error_at("SELEC * FROM devices \x80", 21, "invalid UTF-8");
}

static void test_query_nul_byte_refused(void **state)
{
	static const char text[] = "SELECT * FROM devices WHERE a = 'x\0y'";

	(void)state;
	assert_error_at_len(text, sizeof(text) - 1, 34, "NUL character");
}

static void test_query_not_nul_terminated_input_respects_len(void **state)
{
	static const char text[] = "SELECT * FROM devices WHERE a = 1 GARBAGE";
	twin_query *q = accept_len(text, strlen("SELECT * FROM devices WHERE a = 1"));

	(void)state;
	assert_string_equal(q->text, "SELECT * FROM devices WHERE a = 1");
	twin_query_free(q);
	assert_error_at_len("SELECT * FROM devices WHERE a = 'x'", 34, 32, "unterminated string");
}

/* Depth counts parentheses, NOT, unary minus and function calls together. */
static void test_query_too_deeply_nested_refused(void **state)
{
	static const char *const opens[] = {"(", "NOT ", "-", "IS_NULL("};
	char text[1024];

	(void)state;
	for (size_t k = 0; k < sizeof(opens) / sizeof(opens[0]); k++) {
		for (int depth = 64; depth <= 65; depth++) {
			char *open = repeat(opens[k], (size_t)depth);
			char *close = repeat(opens[k][strlen(opens[k]) - 1] == '(' ? ")" : "",
			                     (size_t)depth);
			twin_query *q;

			snprintf(text, sizeof(text), "SELECT * FROM devices WHERE %sa%s", open,
			         close);
			if (depth == 64) {
				q = accept(text);
				twin_query_free(q);
			} else {
				assert_error_at(text, 28 + 64 * strlen(opens[k]),
				                "expression nested deeper than 64 levels");
			}
			free(open);
			free(close);
		}
	}
	/* 7 levels, then the 58th parenthesis is the 65th level */
	{
		char *parens = repeat("(", 58);

		snprintf(text, sizeof(text), "SELECT * FROM devices WHERE (NOT -(IS_NULL(-(%sa",
		         parens);
		assert_error_at(text, at_of(text, "-((") + 2 + 57,
		                "expression nested deeper than 64 levels");
		free(parens);
	}
}

/* Operator chains are built in loops: length is bounded only by the text. */
static void test_query_long_operator_chain_accepted(void **state)
{
	char *terms = repeat("a = 1 OR b + c - d * 2 < 3 AND ", 250);
	char *text = malloc(strlen(terms) + 64);
	twin_query *q;
	const q_node *n;
	size_t spine = 0;

	(void)state;
	assert_non_null(text);
	sprintf(text, "SELECT * FROM devices WHERE %strue", terms);
	q = accept(text);
	for (n = q->where; n->kind == Q_OR; n = n->a)
		spine++;
	assert_int_equal(spine, 250);
	twin_query_free(q);
	free(terms);
	free(text);
}

static void test_query_free_accepts_null(void **state)
{
	(void)state;
	twin_query_free(NULL);
}

static void test_query_null_error_accepted(void **state)
{
	twin_query *q = (twin_query *)&q;

	(void)state;
	assert_int_equal(twin_query_parse("SELECT", 6, &q, NULL), TWIN_E_INVALID);
	assert_null(q);
	assert_int_equal(twin_query_parse("SELECT * FROM devices", 21, &q, NULL), TWIN_OK);
	twin_query_free(q);
	assert_int_equal(twin_query_parse(NULL, 0, &q, NULL), TWIN_E_INVALID);
	assert_null(q);
	assert_int_equal(twin_query_parse(NULL, 5, &q, NULL), TWIN_E_INVALID);
	assert_null(q);
}

/* cJSON allocation hooks that fail once the budget is spent. */
static long alloc_budget;

static void *failing_malloc(size_t n)
{
	if (alloc_budget-- <= 0)
		return NULL;
	return malloc(n);
}

/* Every allocation failure gives TWIN_E_NOMEM, no query and (checked by
 * LeakSanitizer / valgrind) no leak, until the budget is large enough. */
static void test_query_out_of_memory_reported_without_leaks(void **state)
{
	static const char *const texts[] = {
	        "SELECT TOP 5 deviceId, tags.[[a b]].c AS x FROM devices.modules WHERE "
	        "NOT IS_DEFINED(tags.x) OR (a + -b * 2 >= 0x10 AND c NIN ['p', -1, true, null] AND "
	        "STARTSWITH(d, 'e\\u00e9')) OR f = undefined",
	        "SELECT tags.a, COUNT() AS n, AVG(properties.reported.t) FROM devices GROUP BY "
	        "tags.a, tags.b",
	        "SELECT * FROM devices WHERE a = "
	        "1.00000000000000000000000000000000000000000000000000000000000000000000000001",
	        "SELECT a, a FROM devices",
	};
	cJSON_Hooks hooks = {failing_malloc, free};
	twin_error e;
	twin_query *q;
	twin_err rc;

	(void)state;
	cJSON_InitHooks(&hooks);
	for (size_t t = 0; t < sizeof(texts) / sizeof(texts[0]); t++) {
		long calls = 0;

		for (alloc_budget = 0, rc = TWIN_E_NOMEM; rc == TWIN_E_NOMEM; calls++) {
			long budget = alloc_budget;

			memset(&e, 0, sizeof(e));
			q = (twin_query *)&e;
			rc = twin_query_parse(texts[t], strlen(texts[t]), &q, &e);
			if (rc == TWIN_E_NOMEM) {
				assert_null(q);
				assert_int_equal(e.err, TWIN_E_NOMEM);
				assert_string_equal(e.message,
				                    "Out of memory while parsing the query.");
			}
			twin_query_free(q);
			alloc_budget = budget + 1;
		}
		assert_int_equal(rc, t == 3 ? TWIN_E_INVALID : TWIN_OK);
		assert_true(calls > 3);
	}
	cJSON_InitHooks(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_query_protocol_examples_parse),
	        cmocka_unit_test(test_query_defaults_without_optional_clauses),
	        cmocka_unit_test(test_query_text_kept_nul_terminated),
	        cmocka_unit_test(test_query_keywords_case_insensitive),
	        cmocka_unit_test(test_query_whitespace_between_tokens),
	        cmocka_unit_test(test_query_top_non_negative_integer),
	        cmocka_unit_test(test_query_top_not_a_number_refused),
	        cmocka_unit_test(test_query_source_devices_or_modules),
	        cmocka_unit_test(test_query_bad_source_refused),
	        cmocka_unit_test(test_query_order_by_and_join_refused),
	        cmocka_unit_test(test_query_bracketed_keyword_name),
	        cmocka_unit_test(test_query_bracketed_name_any_text),
	        cmocka_unit_test(test_query_bracketed_name_empty_or_unterminated_refused),
	        cmocka_unit_test(test_query_keyword_as_plain_name_refused),
	        cmocka_unit_test(test_query_contextual_words_are_plain_names),
	        cmocka_unit_test(test_query_name_characters),
	        cmocka_unit_test(test_query_output_names),
	        cmocka_unit_test(test_query_aggregate_output_names),
	        cmocka_unit_test(test_query_duplicate_output_names_refused),
	        cmocka_unit_test(test_query_star_with_other_items_refused),
	        cmocka_unit_test(test_query_select_item_syntax_refused),
	        cmocka_unit_test(test_query_aggregate_arguments_checked),
	        cmocka_unit_test(test_query_group_by_paths),
	        cmocka_unit_test(test_query_group_by_compares_with_name_case_rules),
	        cmocka_unit_test(test_query_group_by_requires_grouped_items),
	        cmocka_unit_test(test_query_group_by_with_star_refused),
	        cmocka_unit_test(test_query_group_by_syntax_refused),
	        cmocka_unit_test(test_query_aggregates_without_group_by),
	        cmocka_unit_test(test_query_aggregates_mixed_with_paths_need_group_by),
	        cmocka_unit_test(test_query_aggregate_in_where_refused),
	        cmocka_unit_test(test_query_precedence_and_over_or),
	        cmocka_unit_test(test_query_precedence_not_over_and),
	        cmocka_unit_test(test_query_precedence_comparison_over_not),
	        cmocka_unit_test(test_query_precedence_arithmetic_over_comparison),
	        cmocka_unit_test(test_query_precedence_unary_minus_highest),
	        cmocka_unit_test(test_query_negative_number_is_a_literal),
	        cmocka_unit_test(test_query_parentheses_override_precedence),
	        cmocka_unit_test(test_query_every_comparison_operator),
	        cmocka_unit_test(test_query_every_arithmetic_operator),
	        cmocka_unit_test(test_query_comparisons_do_not_chain),
	        cmocka_unit_test(test_query_in_and_nin_lists),
	        cmocka_unit_test(test_query_list_must_hold_literals),
	        cmocka_unit_test(test_query_literals_true_false_null_undefined),
	        cmocka_unit_test(test_query_decimal_numbers),
	        cmocka_unit_test(test_query_hex_numbers),
	        cmocka_unit_test(test_query_bad_numbers_refused),
	        cmocka_unit_test(test_query_string_escapes_single_quotes),
	        cmocka_unit_test(test_query_string_escapes_double_quotes),
	        cmocka_unit_test(test_query_string_unicode_escapes),
	        cmocka_unit_test(test_query_string_bad_escapes_refused),
	        cmocka_unit_test(test_query_unterminated_string_refused),
	        cmocka_unit_test(test_query_every_function),
	        cmocka_unit_test(test_query_function_arg_count_checked),
	        cmocka_unit_test(test_query_unknown_function_refused),
	        cmocka_unit_test(test_query_error_position_missing_from),
	        cmocka_unit_test(test_query_error_position_unexpected_end),
	        cmocka_unit_test(test_query_error_position_unexpected_token),
	        cmocka_unit_test(test_query_token_error_reported_where_it_is),
	        cmocka_unit_test(test_query_error_quotes_long_tokens_cut),
	        cmocka_unit_test(test_query_error_position_counts_characters),
	        cmocka_unit_test(test_query_text_too_long_refused),
	        cmocka_unit_test(test_query_text_limit_counts_characters),
	        cmocka_unit_test(test_query_invalid_utf8_refused),
	        cmocka_unit_test(test_query_nul_byte_refused),
	        cmocka_unit_test(test_query_not_nul_terminated_input_respects_len),
	        cmocka_unit_test(test_query_too_deeply_nested_refused),
	        cmocka_unit_test(test_query_long_operator_chain_accepted),
	        cmocka_unit_test(test_query_free_accepts_null),
	        cmocka_unit_test(test_query_null_error_accepted),
	        cmocka_unit_test(test_query_out_of_memory_reported_without_leaks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
