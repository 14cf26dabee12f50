/*
 * golib.c - load the Go library inside a worker and hand control to it
 */
#include "postgres.h"

#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>

#include "storage/ipc.h"

#include "entry/la_entry.h"

typedef int (*la_go_entry) (int arg);

/* The Go library is installed next to this one, in $libdir. */
static void
la_golib_path(char *path, size_t size)
{
	Dl_info		info;
	char	   *slash;

	if (dladdr((void *) la_golib_path, &info) == 0 || info.dli_fname == NULL)
		ereport(FATAL,
				(errmsg("lantern_async could not locate its own library file")));
	strlcpy(path, info.dli_fname, size);
	slash = strrchr(path, '/');
	if (slash == NULL)
		ereport(FATAL,
				(errmsg("lantern_async library path \"%s\" has no directory", path)));
	slash[1] = '\0';
	strlcat(path, LA_GO_LIBRARY_FILE, size);
}

static void *
la_golib_open(const char *path)
{
	sigset_t	all;
	sigset_t	saved;
	void	   *handle;

	/*
	 * Block every signal while the Go runtime starts: its threads inherit
	 * this mask, so PostgreSQL's handlers (die, latch wake-ups) only ever
	 * run on this, the main thread.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &saved);
	handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);

	if (handle == NULL)
		ereport(FATAL,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("could not load Go library \"%s\": %s", path, dlerror()),
				 errhint("Install %s next to lantern_async.so (\"make install\"), from the same build, "
						 "and restart the server if lantern_async.so was replaced while it ran.",
						 LA_GO_LIBRARY_FILE)));
	return handle;
}

/* Returns the Go entry point's exit code, for proc_exit(). */
int
la_golib_run(const char *entry_name, int arg)
{
	char		path[MAXPGPATH];
	void	   *handle;
	la_go_entry entry;
	int			code;

	la_golib_path(path, sizeof(path));
	handle = la_golib_open(path);
	entry = (la_go_entry) dlsym(handle, entry_name);
	if (entry == NULL)
		ereport(FATAL,
				(errmsg("Go library \"%s\" has no entry point %s", path, entry_name)));

	/*
	 * From here on an uncaught ERROR must not longjmp across Go frames: with
	 * no exception stack, elog turns it into FATAL and exits in place.
	 */
	PG_exception_stack = NULL;
	code = entry(arg);
	return code;
}
