/*
 * An LD_PRELOAD shim for the durable benchmarks: fsync(2) and fdatasync(2) do
 * the real call, then wait for an emulated device flush, so that a machine
 * whose disk flushes in microseconds (a VM, tmpfs) behaves like storage where
 * a flush costs milliseconds. bench/slowFsync.ts compiles it with the
 * machine's C compiler into a temp directory:
 *
 *   cc -O2 -shared -fPIC -o slowfsync.so slowfsync.c -lpthread -ldl
 *
 * Read at every call, so that one process can run cases with different
 * flushes (set the variables before the process starts, and change them only
 * while no fsync is in flight):
 *   SLOWFSYNC_DELAY_US  the flush time in microseconds (0 or unset: no delay)
 *   SLOWFSYNC_MODE      how concurrent flushes share the device:
 *     parallel  every call waits its own flush, all at once (flushes overlap:
 *               a device or virtual disk that serves independent requests
 *               side by side)
 *     serial    one flush at a time, one per call (a queue without merging)
 *     merge     one flush at a time; every call that arrives while a flush
 *               runs is covered by the next one, which starts when the
 *               running one ends (what Linux does with a disk cache flush
 *               and what a journaling file system does with its commits)
 * Read when the library loads:
 *   SLOWFSYNC_COUNTERS  a file that the shim maps and keeps two counters in,
 *                       as little-endian 64-bit integers: the calls slowed
 *                       down, then the emulated flushes; read it at any time
 *
 * Only calls that reach libc's fsync/fdatasync are slowed: libuv must run
 * them on its thread pool (UV_USE_IO_URING=0), not through io_uring.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

enum mode { PARALLEL, SERIAL, MERGE };

/* counters[0]: calls, counters[1]: flushes; in the SLOWFSYNC_COUNTERS file when given. */
static atomic_long local_counters[2];
static atomic_long *counters = local_counters;

/* merge: flushes are numbered; `started` is the number of the last one begun,
   `ended` of the last one finished; `busy` while one runs. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static unsigned long started = 0;
static unsigned long ended = 0;
static int busy = 0;

static int (*real_fsync)(int) = NULL;
static int (*real_fdatasync)(int) = NULL;

__attribute__((constructor)) static void init(void) {
  real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
  const char *file = getenv("SLOWFSYNC_COUNTERS");
  if (file == NULL || *file == '\0') return;
  int fd = open(file, O_RDWR | O_CREAT, 0600);
  if (fd < 0) return;
  if (ftruncate(fd, sizeof local_counters) == 0) {
    void *shared = mmap(NULL, sizeof local_counters, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (shared != MAP_FAILED) counters = shared;
  }
  close(fd);
}

static long delay(void) {
  const char *value = getenv("SLOWFSYNC_DELAY_US");
  return value == NULL ? 0 : atol(value);
}

static enum mode mode(void) {
  const char *value = getenv("SLOWFSYNC_MODE");
  if (value != NULL && strcmp(value, "serial") == 0) return SERIAL;
  if (value != NULL && strcmp(value, "merge") == 0) return MERGE;
  return PARALLEL;
}

/* Sleeps the whole delay, resuming after signals. */
static void device_flush(long delay_us) {
  struct timespec left = { delay_us / 1000000, (delay_us % 1000000) * 1000 };
  atomic_fetch_add(&counters[1], 1);
  while (nanosleep(&left, &left) == -1 && errno == EINTR) {
  }
}

/* Returns once a flush that started after this call began has ended. */
static void merged_flush(long delay_us) {
  pthread_mutex_lock(&lock);
  /* A flush running now may have started before this call's data reached
     the device: only the next one covers it. */
  unsigned long needed = started + 1;
  while (ended < needed) {
    if (!busy) {
      busy = 1;
      started++;
      pthread_mutex_unlock(&lock);
      device_flush(delay_us);
      pthread_mutex_lock(&lock);
      ended = started;
      busy = 0;
      pthread_cond_broadcast(&changed);
    } else {
      pthread_cond_wait(&changed, &lock);
    }
  }
  pthread_mutex_unlock(&lock);
}

static void flush(void) {
  long delay_us = delay();
  if (delay_us <= 0) return;
  atomic_fetch_add(&counters[0], 1);
  switch (mode()) {
    case PARALLEL:
      device_flush(delay_us);
      break;
    case SERIAL:
      pthread_mutex_lock(&lock);
      device_flush(delay_us);
      pthread_mutex_unlock(&lock);
      break;
    case MERGE:
      merged_flush(delay_us);
      break;
  }
}

int fsync(int fd) {
  int result = real_fsync(fd);
  flush();
  return result;
}

int fdatasync(int fd) {
  int result = real_fdatasync(fd);
  flush();
  return result;
}
