/*
 * fault.h - failure injection for the store's unit tests (test_faults.c).
 *
 * The test executable is linked with --wrap for the allocator and for the
 * LMDB calls store/ makes (tests/CMakeLists.txt), so every call site of the
 * store passes through fault.c, including sites written after this test,
 * and the store itself carries no test hook. cJSON is a shared library: its
 * allocations come here through cJSON_InitHooks (fault_arm installs them).
 *
 * While armed, calls of the chosen kind are counted from 1, and call number
 * n fails once, as SQLite's malloc tests do; the calls before and after it
 * succeed. Disarmed, every wrapper calls straight through.
 *
 * RAND_bytes is wrapped too, to give fixed bytes: runs to be compared byte
 * for byte must generate the same identity fields.
 */
#ifndef TWIN_TEST_FAULT_H
#define TWIN_TEST_FAULT_H

typedef enum fault_kind {
	FAULT_ALLOC,    /* malloc, calloc, realloc, strdup, cJSON's allocator: NULL */
	FAULT_IO,       /* every LMDB call the store makes: EIO (a failing disk) */
	FAULT_MAP_FULL, /* LMDB puts and commits: MDB_MAP_FULL (the map is full) */
} fault_kind;

/* Count calls of kind k and fail the n-th (n >= 1). */
void fault_arm(fault_kind k, long n);

/* Stop counting. Returns whether the n-th call happened (and failed). */
int fault_disarm(void);

/* Name of a kind, for messages. */
const char *fault_kind_name(fault_kind k);

#endif
