/* cuecast-testcam's LD_PRELOAD library: V4L2 capture devices in user space, for machines without a camera
 * and without kernel modules (no vivid, no v4l2loopback).
 *
 * Any unmodified program started under `cuecast-testcam run` sees the devices of its spec: open() of
 * /dev/videoN (or /dev/v4l/by-id/NAME) connects to the testcam daemon (src/cuecast/testcam/daemon.py), which
 * owns each camera's state (controls, the stream's owner, plugged or not) so that every process sees the
 * same device, and which paces the frames. The fd the program gets is a real, pollable socket: poll, ppoll
 * and select work on it as on a video node (wrapped here only to report POLLERR as vb2 does: not streaming,
 * or unplugged). ioctl() answers the V4L2 UAPI as uvcvideo does (formats and frame intervals, controls with
 * uvc's clamping and inactive flag, MMAP streaming with vb2's queue rules, EBUSY for a second streamer,
 * ENODEV after an unplug); mmap() of a buffer gives anonymous shared memory the frames are copied into;
 * stat() says "character device 81:N" as GStreamer's v4l2src checks.
 *
 * Wire protocol with the daemon (unix stream sockets, one pair per open()):
 *   event socket (the program's fd): "OPEN <path>\n" -> text description ending "END\n"; then only
 *     32-byte frame notifications (struct tc_note) while streaming.
 *   control socket (hidden): one request line, one answer line ("OK ..." or "ERR <errno>").
 * Frames are in a file under /dev/shm named in the description: a header then SLOTS slots; notification
 * seq's data is in slot seq % SLOTS, checked against the slot's own seq.
 */
#undef _FILE_OFFSET_BITS /* we define both open and open64 (and friends) ourselves */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/videodev2.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_DEVS 16
#define MAX_FMTS 16
#define MAX_SIZES 16
#define MAX_RATES 8
#define MAX_CTRLS 48
#define MAX_MENU 16
#define MAX_BUFS 32
#define MAX_FILES 256
#define VIDEO_MAJOR 81

struct tc_note {                /* daemon -> program, one per frame (little-endian, native) */
  uint64_t seq;
  uint64_t ts_ns;               /* CLOCK_MONOTONIC when the frame was taken */
  uint32_t slot;
  uint32_t bytesused;
  uint32_t flags;               /* 1: the frame is corrupt (sent anyway, as some cameras do) */
  uint32_t pad;
};

struct tc_slot_hdr {            /* in the frame store, before each slot's data */
  uint64_t seq;
  uint32_t bytesused;
  uint32_t pad;
};

struct tc_store_hdr {           /* the frame store's first page */
  uint32_t magic;               /* 'TCAM' */
  uint32_t unplugged;           /* set by the daemon on unplug: every ioctl gives ENODEV */
  uint32_t slots;
  uint32_t slot_size;           /* bytes per slot including its header */
};

struct tc_size { uint32_t w, h, sizeimage; int nrates; uint32_t fps[MAX_RATES]; };
struct tc_fmt { uint32_t fourcc; char desc[32]; int compressed; int nsizes; struct tc_size sizes[MAX_SIZES]; };
struct tc_ctrl {
  uint32_t id; uint32_t type; int32_t min, max, step, def; char name[32];
  int nmenu; int32_t menu_idx[MAX_MENU]; char menu_name[MAX_MENU][32];
};

struct tc_dev {                 /* a device's description, as the daemon gave it at open */
  char path[128];
  char card[32], bus[32], driver[16];
  uint32_t minor;
  char store[128];
  int nfmts; struct tc_fmt fmts[MAX_FMTS];
  int nctrls; struct tc_ctrl ctrls[MAX_CTRLS];
};

enum { B_USER, B_QUEUED, B_DONE };
struct tc_buf {
  int state; void *mem; size_t length; uint32_t bytesused, flags; uint64_t seq, ts_ns;
};

struct tc_file {
  int fd;                       /* the event socket the program holds (and any dup of it) */
  int refs;
  int ctl;                      /* control socket */
  int nonblock;
  struct tc_dev dev;
  volatile struct tc_store_hdr *store;
  size_t store_len;
  uint32_t fourcc, width, height, sizeimage, bytesperline, fps;
  int nbufs; struct tc_buf bufs[MAX_BUFS];
  int queued[MAX_BUFS], nqueued;
  int done[MAX_BUFS], ndone;
  int streaming;
  uint32_t input;
  pthread_mutex_t lock;
};

static struct tc_file *files[MAX_FILES];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

/* The real libc functions. */
static int (*real_open) (const char *, int, ...);
static int (*real_openat) (int, const char *, int, ...);
static int (*real_close) (int);
static int (*real_ioctl) (int, unsigned long, ...);
static void *(*real_mmap) (void *, size_t, int, int, int, off_t);
static int (*real_munmap) (void *, size_t);
static int (*real_poll) (struct pollfd *, nfds_t, int);
static int (*real_ppoll) (struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
static int (*real_select) (int, fd_set *, fd_set *, fd_set *, struct timeval *);
static int (*real_dup) (int);
static int (*real_dup2) (int, int);
static int (*real_dup3) (int, int, int);
static int (*real_fcntl) (int, int, ...);
static int (*real_stat) (const char *, struct stat *);
static int (*real_lstat) (const char *, struct stat *);
static int (*real_fstat) (int, struct stat *);
static int (*real_fstatat) (int, const char *, struct stat *, int);
static int (*real_access) (const char *, int);
static ssize_t (*real_readlink) (const char *, char *, size_t);
static char *(*real_realpath) (const char *, char *);

static pthread_once_t once = PTHREAD_ONCE_INIT;
static const char *daemon_socket;
static const char *state_dir;   /* holds <minor>.unplugged while a device is unplugged, and <minor>.renamed
                                 * ("PATH MINOR") while it is plugged back under another number */

/* The devices of the spec, for stat/access/readlink without asking the daemon: CUECAST_TESTCAM_DEVICES is
 * "PATH|BYID|MINOR;..." (set by `cuecast-testcam run`). `path` and `minor` are where the camera is now (a replug
 * may bring it back as another /dev/videoN); `spec_path` and `spec_minor` name it to the daemon and in the
 * state files. */
struct tc_node { char path[128]; char spec_path[128]; char by_id[160]; uint32_t minor, spec_minor; };
static struct tc_node nodes[MAX_DEVS];
static int nnodes;

static void
init (void)
{
  real_open = dlsym (RTLD_NEXT, "open");
  real_openat = dlsym (RTLD_NEXT, "openat");
  real_close = dlsym (RTLD_NEXT, "close");
  real_ioctl = dlsym (RTLD_NEXT, "ioctl");
  real_mmap = dlsym (RTLD_NEXT, "mmap");
  real_munmap = dlsym (RTLD_NEXT, "munmap");
  real_poll = dlsym (RTLD_NEXT, "poll");
  real_ppoll = dlsym (RTLD_NEXT, "ppoll");
  real_select = dlsym (RTLD_NEXT, "select");
  real_dup = dlsym (RTLD_NEXT, "dup");
  real_dup2 = dlsym (RTLD_NEXT, "dup2");
  real_dup3 = dlsym (RTLD_NEXT, "dup3");
  real_fcntl = dlsym (RTLD_NEXT, "fcntl");
  real_stat = dlsym (RTLD_NEXT, "stat");
  real_lstat = dlsym (RTLD_NEXT, "lstat");
  real_fstat = dlsym (RTLD_NEXT, "fstat");
  real_fstatat = dlsym (RTLD_NEXT, "fstatat");
  real_access = dlsym (RTLD_NEXT, "access");
  real_readlink = dlsym (RTLD_NEXT, "readlink");
  real_realpath = dlsym (RTLD_NEXT, "realpath");
  daemon_socket = getenv ("CUECAST_TESTCAM_SOCKET");
  state_dir = getenv ("CUECAST_TESTCAM_STATE");
  const char *devs = getenv ("CUECAST_TESTCAM_DEVICES");
  while (devs && *devs && nnodes < MAX_DEVS) {
    struct tc_node *n = &nodes[nnodes];
    const char *end = strchr (devs, ';');
    size_t len = end ? (size_t) (end - devs) : strlen (devs);
    char item[320];
    snprintf (item, sizeof item, "%.*s", (int) len, devs);
    char *a = strtok (item, "|"), *b = strtok (NULL, "|"), *c = strtok (NULL, "|");
    if (a && b && c) {
      snprintf (n->path, sizeof n->path, "%s", a);
      snprintf (n->spec_path, sizeof n->spec_path, "%s", a);
      snprintf (n->by_id, sizeof n->by_id, "%s", strcmp (b, "-") ? b : "");
      n->minor = n->spec_minor = (uint32_t) atoi (c);
      nnodes++;
    }
    devs = end ? end + 1 : NULL;
  }
}

#define INIT() pthread_once (&once, init)

static int
node_unplugged (const struct tc_node *n)
{
  if (!state_dir)
    return 0;
  char p[300];
  snprintf (p, sizeof p, "%s/%u.unplugged", state_dir, n->spec_minor);
  return real_access (p, F_OK) == 0;
}

/* Where each camera is now: the spec's node, or the one `cuecast-testcam replug PATH --as NODE` gave it. */
static void
refresh_nodes (void)
{
  for (int i = 0; i < nnodes && state_dir; i++) {
    struct tc_node *n = &nodes[i];
    char p[300], path[128];
    unsigned minor;
    snprintf (p, sizeof p, "%s/%u.renamed", state_dir, n->spec_minor);
    int fd = real_open (p, O_RDONLY | O_CLOEXEC);
    char text[200] = "";
    if (fd >= 0) {
      ssize_t got = read (fd, text, sizeof text - 1);
      text[got > 0 ? got : 0] = 0;
      real_close (fd);
    }
    if (fd >= 0 && sscanf (text, "%127s %u", path, &minor) == 2) {
      snprintf (n->path, sizeof n->path, "%s", path);
      n->minor = minor;
    } else {
      snprintf (n->path, sizeof n->path, "%s", n->spec_path);
      n->minor = n->spec_minor;
    }
  }
}

/* The node a path names: its /dev/videoN path or its /dev/v4l/by-id/NAME link; NULL when not ours. */
static struct tc_node *
node_of (const char *path, int *is_link)
{
  if (!path || strncmp (path, "/dev/", 5) != 0)
    return NULL;
  refresh_nodes ();
  for (int i = 0; i < nnodes; i++) {
    if (strcmp (path, nodes[i].path) == 0) {
      if (is_link)
        *is_link = 0;
      return &nodes[i];
    }
    if (nodes[i].by_id[0] && strcmp (path, nodes[i].by_id) == 0) {
      if (is_link)
        *is_link = 1;
      return &nodes[i];
    }
  }
  return NULL;
}

static struct tc_file *
file_of (int fd)
{
  if (fd < 0 || fd >= MAX_FILES)
    return NULL;
  pthread_mutex_lock (&table_lock);
  struct tc_file *f = files[fd];
  pthread_mutex_unlock (&table_lock);
  return f;
}

/* -- talking to the daemon ------------------------------------------------------------------------------- */

static int
connect_daemon (void)
{
  if (!daemon_socket)
    return -1;
  int s = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0)
    return -1;
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  snprintf (addr.sun_path, sizeof addr.sun_path, "%s", daemon_socket);
  if (connect (s, (struct sockaddr *) &addr, sizeof addr) < 0) {
    real_close (s);
    return -1;
  }
  return s;
}

static int
write_all (int s, const char *buf, size_t len)
{
  while (len) {
    ssize_t n = send (s, buf, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    buf += n;
    len -= (size_t) n;
  }
  return 0;
}

/* One line from a socket (blocking, byte by byte: the answers are short). */
static int
read_line (int s, char *buf, size_t size)
{
  size_t n = 0;
  while (n + 1 < size) {
    char c;
    ssize_t r = recv (s, &c, 1, 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    if (c == '\n')
      break;
    buf[n++] = c;
  }
  buf[n] = 0;
  return 0;
}

/* Send a request on the control socket; the answer's text after "OK " in `out`; -errno on "ERR n". */
static int
request (struct tc_file *f, char *out, size_t outsize, const char *fmt, ...)
{
  char line[256];
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (line, sizeof line - 1, fmt, ap);
  va_end (ap);
  strcat (line, "\n");
  char answer[256];
  if (outsize > sizeof answer)
    outsize = sizeof answer;
  if (write_all (f->ctl, line, strlen (line)) < 0 || read_line (f->ctl, answer, sizeof answer) < 0)
    return -ENODEV;
  if (strncmp (answer, "OK", 2) == 0) {
    if (out)
      snprintf (out, outsize, "%s", answer[2] ? answer + 3 : "");
    return 0;
  }
  if (strncmp (answer, "ERR ", 4) == 0)
    return -atoi (answer + 4);
  return -EIO;
}

static int
parse_description (int s, struct tc_dev *d)
{
  char line[256];
  memset (d, 0, sizeof *d);
  snprintf (d->driver, sizeof d->driver, "uvcvideo");
  struct tc_fmt *fmt = NULL;
  for (;;) {
    if (read_line (s, line, sizeof line) < 0)
      return -1;
    if (strcmp (line, "END") == 0)
      return 0;
    if (strncmp (line, "ERR ", 4) == 0)
      return -atoi (line + 4);
    char *rest = strchr (line, ' ');
    if (!rest)
      continue;
    *rest++ = 0;
    if (strcmp (line, "PATH") == 0)
      snprintf (d->path, sizeof d->path, "%s", rest);
    else if (strcmp (line, "CARD") == 0)
      snprintf (d->card, sizeof d->card, "%s", rest);
    else if (strcmp (line, "BUS") == 0)
      snprintf (d->bus, sizeof d->bus, "%s", rest);
    else if (strcmp (line, "MINOR") == 0)
      d->minor = (uint32_t) atoi (rest);
    else if (strcmp (line, "STORE") == 0)
      snprintf (d->store, sizeof d->store, "%s", rest);
    else if (strcmp (line, "FMT") == 0 && d->nfmts < MAX_FMTS) {
      /* FMT <fourcc> <compressed> <description> */
      fmt = &d->fmts[d->nfmts++];
      char cc[8] = { 0 };
      int n = 0;
      sscanf (rest, "%4s %d %n", cc, &fmt->compressed, &n);
      fmt->fourcc = v4l2_fourcc (cc[0], cc[1], cc[2], cc[3]);
      snprintf (fmt->desc, sizeof fmt->desc, "%s", rest + n);
    } else if (strcmp (line, "SIZE") == 0 && fmt && fmt->nsizes < MAX_SIZES) {
      /* SIZE <w> <h> <sizeimage> <fps>... */
      struct tc_size *z = &fmt->sizes[fmt->nsizes++];
      int n = 0;
      sscanf (rest, "%u %u %u%n", &z->w, &z->h, &z->sizeimage, &n);
      char *p = rest + n;
      while (z->nrates < MAX_RATES) {
        char *end;
        long v = strtol (p, &end, 10);
        if (end == p)
          break;
        z->fps[z->nrates++] = (uint32_t) v;
        p = end;
      }
    } else if (strcmp (line, "CTRL") == 0 && d->nctrls < MAX_CTRLS) {
      /* CTRL <id> <type> <min> <max> <step> <default> <name> */
      struct tc_ctrl *c = &d->ctrls[d->nctrls++];
      int n = 0;
      sscanf (rest, "%u %u %d %d %d %d %n", &c->id, &c->type, &c->min, &c->max, &c->step, &c->def, &n);
      snprintf (c->name, sizeof c->name, "%s", rest + n);
    } else if (strcmp (line, "MENU") == 0 && d->nctrls > 0) {
      /* MENU <index> <name> (for the last CTRL) */
      struct tc_ctrl *c = &d->ctrls[d->nctrls - 1];
      if (c->nmenu < MAX_MENU) {
        int n = 0;
        sscanf (rest, "%d %n", &c->menu_idx[c->nmenu], &n);
        snprintf (c->menu_name[c->nmenu], 32, "%s", rest + n);
        c->nmenu++;
      }
    }
  }
}

static int
unplugged (struct tc_file *f)
{
  return f->store && f->store->unplugged;
}

/* -- open/close/dup ------------------------------------------------------------------------------------ */

static int
tc_open (struct tc_node *node, int flags)
{
  int ev = connect_daemon ();
  if (ev < 0) {
    errno = ENODEV;
    return -1;
  }
  char hello[200];
  snprintf (hello, sizeof hello, "OPEN %s %d\n", node->spec_path, (int) getpid ());
  struct tc_file *f = calloc (1, sizeof *f);
  int err = ENODEV;
  if (!f || write_all (ev, hello, strlen (hello)) < 0)
    goto fail;
  int r = parse_description (ev, &f->dev);
  if (r != 0) {
    err = r < 0 ? -r : ENODEV;
    goto fail;
  }
  char token[64];
  if (read_line (ev, token, sizeof token) < 0)   /* "CLIENT <id>" */
    goto fail;
  f->ctl = connect_daemon ();
  if (f->ctl < 0)
    goto fail;
  char line[100];
  snprintf (line, sizeof line, "CTL %s\n", token + 7);
  char answer[64];
  if (write_all (f->ctl, line, strlen (line)) < 0 || read_line (f->ctl, answer, sizeof answer) < 0
      || strncmp (answer, "OK", 2) != 0)
    goto fail;
  int sfd = real_open (f->dev.store, O_RDONLY | O_CLOEXEC);
  if (sfd >= 0) {
    struct stat st;
    if (real_fstat (sfd, &st) == 0 && st.st_size > 0) {
      void *m = real_mmap (NULL, (size_t) st.st_size, PROT_READ, MAP_SHARED, sfd, 0);
      if (m != MAP_FAILED) {
        f->store = m;
        f->store_len = (size_t) st.st_size;
      }
    }
    real_close (sfd);
  }
  if (!f->store)
    goto fail;
  if (!(flags & O_CLOEXEC))
    real_fcntl (ev, F_SETFD, 0);
  f->fd = ev;
  f->refs = 1;
  f->nonblock = (flags & O_NONBLOCK) != 0;
  pthread_mutex_init (&f->lock, NULL);
  /* The default format: the first format's first size at its first rate, as uvcvideo starts. */
  f->fourcc = f->dev.fmts[0].fourcc;
  f->width = f->dev.fmts[0].sizes[0].w;
  f->height = f->dev.fmts[0].sizes[0].h;
  f->sizeimage = f->dev.fmts[0].sizes[0].sizeimage;
  f->bytesperline = f->dev.fmts[0].compressed ? 0 : f->width * 2;
  f->fps = f->dev.fmts[0].sizes[0].fps[0];
  if (ev >= MAX_FILES)
    goto fail;
  pthread_mutex_lock (&table_lock);
  files[ev] = f;
  pthread_mutex_unlock (&table_lock);
  return ev;
fail:
  if (f && f->ctl > 0)
    real_close (f->ctl);
  if (f && f->store)
    real_munmap ((void *) f->store, f->store_len);
  free (f);
  real_close (ev);
  errno = err;
  return -1;
}

static void
release_file (struct tc_file *f)
{
  for (int i = 0; i < f->nbufs; i++)
    if (f->bufs[i].mem)
      real_munmap (f->bufs[i].mem, f->bufs[i].length);
  real_close (f->ctl);
  if (f->store)
    real_munmap ((void *) f->store, f->store_len);
  pthread_mutex_destroy (&f->lock);
  free (f);
}

static int
open_path (const char *path, int flags, int *handled)
{
  INIT ();
  int link;
  struct tc_node *node = node_of (path, &link);
  *handled = node != NULL;
  if (!node)
    return -1;
  if (node_unplugged (node)) {
    errno = ENOENT;
    return -1;
  }
  return tc_open (node, flags);
}

int
open (const char *path, int flags, ...)
{
  INIT ();
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start (ap, flags);
    mode = va_arg (ap, mode_t);
    va_end (ap);
  }
  int handled;
  int fd = open_path (path, flags, &handled);
  return handled ? fd : real_open (path, flags, mode);
}

int open64 (const char *path, int flags, ...) __attribute__ ((alias ("open")));

int
__open_2 (const char *path, int flags)
{
  return open (path, flags);
}

int __open64_2 (const char *path, int flags) __attribute__ ((alias ("__open_2")));

int
openat (int dirfd, const char *path, int flags, ...)
{
  INIT ();
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start (ap, flags);
    mode = va_arg (ap, mode_t);
    va_end (ap);
  }
  int handled;
  int fd = open_path (path, flags, &handled);
  return handled ? fd : real_openat (dirfd, path, flags, mode);
}

int openat64 (int dirfd, const char *path, int flags, ...) __attribute__ ((alias ("openat")));

int
__openat_2 (int dirfd, const char *path, int flags)
{
  return openat (dirfd, path, flags);
}

int
close (int fd)
{
  INIT ();
  struct tc_file *f = NULL;
  if (fd >= 0 && fd < MAX_FILES) {
    pthread_mutex_lock (&table_lock);
    f = files[fd];
    files[fd] = NULL;
    if (f && --f->refs > 0)
      f = NULL;
    pthread_mutex_unlock (&table_lock);
  }
  int r = real_close (fd);
  if (f)
    release_file (f);           /* the daemon sees both sockets close: the stream and ownership end */
  return r;
}

static int
track_dup (int old, int new)
{
  if (new < 0 || new >= MAX_FILES)
    return new;
  pthread_mutex_lock (&table_lock);
  struct tc_file *f = (old >= 0 && old < MAX_FILES) ? files[old] : NULL;
  if (f) {
    files[new] = f;
    f->refs++;
  }
  pthread_mutex_unlock (&table_lock);
  return new;
}

int
dup (int fd)
{
  INIT ();
  return track_dup (fd, real_dup (fd));
}

int
dup2 (int fd, int fd2)
{
  INIT ();
  if (fd != fd2 && file_of (fd2))
    close (fd2);
  return track_dup (fd, real_dup2 (fd, fd2));
}

int
dup3 (int fd, int fd2, int flags)
{
  INIT ();
  if (fd != fd2 && file_of (fd2))
    close (fd2);
  return track_dup (fd, real_dup3 (fd, fd2, flags));
}

int
fcntl (int fd, int cmd, ...)
{
  INIT ();
  va_list ap;
  va_start (ap, cmd);
  void *arg = va_arg (ap, void *);
  va_end (ap);
  int r = real_fcntl (fd, cmd, arg);
  if ((cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && r >= 0)
    return track_dup (fd, r);
  struct tc_file *f;
  if (cmd == F_SETFL && r == 0 && (f = file_of (fd)))
    f->nonblock = ((long) arg & O_NONBLOCK) != 0;
  return r;
}

int fcntl64 (int fd, int cmd, ...) __attribute__ ((alias ("fcntl")));

/* -- stat and friends: a character device 81:N, by-id names as symbolic links ---------------------------- */

static void
fill_stat (struct stat *st, struct tc_node *n)
{
  memset (st, 0, sizeof *st);
  st->st_mode = S_IFCHR | 0660;
  st->st_rdev = makedev (VIDEO_MAJOR, n->minor);
  st->st_nlink = 1;
  st->st_gid = 44;              /* video */
  st->st_blksize = 4096;
  st->st_ino = 1000 + n->minor;
  struct timespec now;
  clock_gettime (CLOCK_REALTIME, &now);
  st->st_atim = st->st_mtim = st->st_ctim = now;
}

static int
stat_node (const char *path, struct stat *st, int follow, int *handled)
{
  INIT ();
  int link;
  struct tc_node *n = node_of (path, &link);
  *handled = n != NULL;
  if (!n)
    return -1;
  if (node_unplugged (n)) {
    errno = ENOENT;
    return -1;
  }
  fill_stat (st, n);
  if (link && !follow) {
    st->st_mode = S_IFLNK | 0777;
    st->st_rdev = 0;
    st->st_size = (off_t) strlen (n->path) + 6;   /* "../../videoN" */
  }
  return 0;
}

int
stat (const char *path, struct stat *st)
{
  int h, r = stat_node (path, st, 1, &h);
  return h ? r : real_stat (path, st);
}

int
stat64 (const char *path, struct stat64 *st)
{
  return stat (path, (struct stat *) st);
}

int
lstat (const char *path, struct stat *st)
{
  int h, r = stat_node (path, st, 0, &h);
  return h ? r : real_lstat (path, st);
}

int
lstat64 (const char *path, struct stat64 *st)
{
  return lstat (path, (struct stat *) st);
}

int
fstatat (int dirfd, const char *path, struct stat *st, int flags)
{
  int h, r = stat_node (path, st, !(flags & AT_SYMLINK_NOFOLLOW), &h);
  if (h)
    return r;
  if ((flags & AT_EMPTY_PATH) && !path[0]) {
    struct tc_file *f = file_of (dirfd);
    if (f) {
      for (int i = 0; i < nnodes; i++)
        if (strcmp (nodes[i].spec_path, f->dev.path) == 0) {
          fill_stat (st, &nodes[i]);
          return 0;
        }
    }
  }
  return real_fstatat (dirfd, path, st, flags);
}

int
fstatat64 (int dirfd, const char *path, struct stat64 *st, int flags)
{
  return fstatat (dirfd, path, (struct stat *) st, flags);
}

int
fstat (int fd, struct stat *st)
{
  INIT ();
  struct tc_file *f = file_of (fd);
  if (f) {
    for (int i = 0; i < nnodes; i++)
      if (strcmp (nodes[i].spec_path, f->dev.path) == 0) {
        fill_stat (st, &nodes[i]);
        return 0;
      }
  }
  return real_fstat (fd, st);
}

int
fstat64 (int fd, struct stat64 *st)
{
  return fstat (fd, (struct stat *) st);
}

/* glibc < 2.33 entry points, still called by binaries built against them. */
int
__xstat (int ver, const char *path, struct stat *st)
{
  (void) ver;
  return stat (path, st);
}

int __xstat64 (int ver, const char *path, struct stat *st) __attribute__ ((alias ("__xstat")));

int
__lxstat (int ver, const char *path, struct stat *st)
{
  (void) ver;
  return lstat (path, st);
}

int __lxstat64 (int ver, const char *path, struct stat *st) __attribute__ ((alias ("__lxstat")));

int
__fxstat (int ver, int fd, struct stat *st)
{
  (void) ver;
  return fstat (fd, st);
}

int __fxstat64 (int ver, int fd, struct stat *st) __attribute__ ((alias ("__fxstat")));

int
access (const char *path, int mode)
{
  INIT ();
  struct tc_node *n = node_of (path, NULL);
  if (n) {
    if (!node_unplugged (n))
      return 0;
    errno = ENOENT;
    return -1;
  }
  return real_access (path, mode);
}

ssize_t
readlink (const char *path, char *buf, size_t size)
{
  INIT ();
  int link;
  struct tc_node *n = node_of (path, &link);
  if (!n)
    return real_readlink (path, buf, size);
  if (!link) {
    errno = EINVAL;
    return -1;
  }
  char target[160];
  snprintf (target, sizeof target, "../../%s", n->path + 5);
  size_t len = strlen (target);
  if (len > size)
    len = size;
  memcpy (buf, target, len);
  return (ssize_t) len;
}

char *
realpath (const char *path, char *resolved)
{
  INIT ();
  struct tc_node *n = node_of (path, NULL);
  if (!n)
    return real_realpath (path, resolved);
  if (!resolved)
    return strdup (n->path);
  snprintf (resolved, PATH_MAX, "%s", n->path);
  return resolved;
}

/* /dev/v4l/by-id listed: the by-id names of the plugged cameras (as udev makes them). */
#define BYID_DIR "/dev/v4l/by-id"
struct fake_dir { struct dirent *ents; int n, cap, pos; };
static struct fake_dir *fake_dirs[8];
static DIR *(*real_opendir) (const char *);
static struct dirent *(*real_readdir) (DIR *);
static int (*real_closedir) (DIR *);

static int
fake_slot (DIR *d)
{
  for (int i = 0; i < 8; i++)
    if (d && (void *) fake_dirs[i] == (void *) d)
      return i;
  return -1;
}

static void
fake_add (struct fake_dir *d, const char *name, unsigned char type, ino_t ino)
{
  if (d->n == d->cap) {
    int cap = d->cap ? d->cap * 2 : 32;
    struct dirent *e = realloc (d->ents, sizeof *e * (size_t) cap);
    if (!e)
      return;
    d->ents = e;
    d->cap = cap;
  }
  memset (&d->ents[d->n], 0, sizeof d->ents[0]);
  d->ents[d->n].d_type = type;
  d->ents[d->n].d_ino = ino;
  d->ents[d->n].d_reclen = sizeof d->ents[0];
  snprintf (d->ents[d->n].d_name, sizeof d->ents[0].d_name, "%s", name);
  d->n++;
}

/* /dev (its real entries plus the plugged cameras' videoN) and /dev/v4l/by-id (their by-id names). */
DIR *
opendir (const char *name)
{
  INIT ();
  if (!real_opendir) {
    real_opendir = dlsym (RTLD_NEXT, "opendir");
    real_readdir = dlsym (RTLD_NEXT, "readdir");
    real_closedir = dlsym (RTLD_NEXT, "closedir");
  }
  int by_id = name && (!strcmp (name, BYID_DIR) || !strcmp (name, BYID_DIR "/"));
  int dev = name && (!strcmp (name, "/dev") || !strcmp (name, "/dev/"));
  if (!by_id && !dev)
    return real_opendir (name);
  struct fake_dir *d = calloc (1, sizeof *d);
  if (!d)
    return NULL;
  if (dev) {
    DIR *real = real_opendir (name);
    struct dirent *e;
    while (real && (e = real_readdir (real)))
      fake_add (d, e->d_name, e->d_type, e->d_ino);
    if (real)
      real_closedir (real);
    refresh_nodes ();
    for (int i = 0; i < nnodes; i++)
      if (!node_unplugged (&nodes[i]))
        fake_add (d, nodes[i].path + 5, DT_CHR, 1000 + nodes[i].minor);
  } else {
    fake_add (d, ".", DT_DIR, 1);
    fake_add (d, "..", DT_DIR, 1);
    for (int i = 0; i < nnodes; i++)
      if (nodes[i].by_id[0] && !node_unplugged (&nodes[i]))
        fake_add (d, nodes[i].by_id + strlen (BYID_DIR) + 1, DT_LNK, 2000 + nodes[i].minor);
  }
  pthread_mutex_lock (&table_lock);
  for (int i = 0; i < 8; i++)
    if (!fake_dirs[i]) {
      fake_dirs[i] = d;
      pthread_mutex_unlock (&table_lock);
      return (DIR *) d;
    }
  pthread_mutex_unlock (&table_lock);
  free (d->ents);
  free (d);
  errno = EMFILE;
  return NULL;
}

struct dirent *
readdir (DIR *dir)
{
  INIT ();
  if (!real_readdir)
    real_readdir = dlsym (RTLD_NEXT, "readdir");
  int i = fake_slot (dir);
  if (i < 0)
    return real_readdir (dir);
  struct fake_dir *d = fake_dirs[i];
  return d->pos < d->n ? &d->ents[d->pos++] : NULL;
}

struct dirent64 *
readdir64 (DIR *dir)
{
  return (struct dirent64 *) readdir (dir);
}

int
closedir (DIR *dir)
{
  INIT ();
  if (!real_closedir)
    real_closedir = dlsym (RTLD_NEXT, "closedir");
  pthread_mutex_lock (&table_lock);
  int i = fake_slot (dir);
  if (i >= 0) {
    free (fake_dirs[i]->ents);
    free (fake_dirs[i]);
    fake_dirs[i] = NULL;
  }
  pthread_mutex_unlock (&table_lock);
  return i >= 0 ? 0 : real_closedir (dir);
}

/* /sys/dev/char/81:N/uevent, where v4l-utils learn what a node is (DEVNAME=videoN). */
static FILE *(*real_fopen) (const char *, const char *);

FILE *
fopen (const char *path, const char *mode)
{
  INIT ();
  if (!real_fopen)
    real_fopen = dlsym (RTLD_NEXT, "fopen");
  unsigned maj, min;
  char tail[16];
  if (path && sscanf (path, "/sys/dev/char/%u:%u/%15s", &maj, &min, tail) == 3 && maj == VIDEO_MAJOR
      && strcmp (tail, "uevent") == 0) {
    refresh_nodes ();
    for (int i = 0; i < nnodes; i++)
      if (nodes[i].minor == min && !node_unplugged (&nodes[i])) {
        char text[160];
        snprintf (text, sizeof text, "MAJOR=%u\nMINOR=%u\nDEVNAME=%s\n", maj, min, nodes[i].path + 5);
        /* a real fd (libstdc++'s ifstream reads the FILE's fd directly) */
        int fd = memfd_create ("uevent", MFD_CLOEXEC);
        if (fd < 0 || write (fd, text, strlen (text)) < 0 || lseek (fd, 0, SEEK_SET) < 0)
          return NULL;
        return fdopen (fd, "r");
      }
  }
  return real_fopen (path, mode);
}

FILE *fopen64 (const char *path, const char *mode) __attribute__ ((alias ("fopen")));

/* -- frames: notifications in, buffers filled ----------------------------------------------------------- */

static int
compressed (struct tc_file *f)
{
  for (int i = 0; i < f->dev.nfmts; i++)
    if (f->dev.fmts[i].fourcc == f->fourcc)
      return f->dev.fmts[i].compressed;
  return 0;
}

/* Take every notification waiting on the event socket: each frame fills the oldest queued buffer, or is
 * dropped when the program has none queued (the driver's sequence then shows the gap). Lock held. */
static void
drain (struct tc_file *f)
{
  struct tc_note note;
  for (;;) {
    ssize_t n = recv (f->fd, &note, sizeof note, MSG_DONTWAIT | MSG_PEEK);
    if (n < (ssize_t) sizeof note)
      return;
    recv (f->fd, &note, sizeof note, MSG_DONTWAIT);
    if (!f->streaming || f->nqueued == 0)
      continue;
    int idx = f->queued[0];
    memmove (f->queued, f->queued + 1, sizeof (int) * (size_t) --f->nqueued);
    struct tc_buf *b = &f->bufs[idx];
    const char *base = (const char *) f->store;
    uint32_t slot_size = f->store->slot_size;
    const struct tc_slot_hdr *sh = (const void *) (base + 4096 + (size_t) note.slot * slot_size);
    uint32_t used = note.bytesused;
    if (used > b->length)
      used = (uint32_t) b->length;
    if (b->mem && sh->seq == note.seq)
      memcpy (b->mem, (const char *) sh + sizeof *sh, used);
    b->flags = (sh->seq != note.seq || note.flags) ? V4L2_BUF_FLAG_ERROR : 0;
    b->bytesused = compressed (f) ? used : f->sizeimage;
    b->seq = note.seq;
    b->ts_ns = note.ts_ns;
    b->state = B_DONE;
    f->done[f->ndone++] = idx;
  }
}

static void
fill_buffer (struct tc_file *f, int i, struct v4l2_buffer *vb)
{
  struct tc_buf *b = &f->bufs[i];
  uint32_t type = vb->type;
  memset (vb, 0, sizeof *vb);
  vb->index = (uint32_t) i;
  vb->type = type;
  vb->memory = V4L2_MEMORY_MMAP;
  vb->length = (uint32_t) b->length;
  vb->m.offset = (uint32_t) (i * ((b->length + 4095) & ~(size_t) 4095));
  vb->field = V4L2_FIELD_NONE;
  vb->flags = V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC | V4L2_BUF_FLAG_TSTAMP_SRC_SOE;
  if (b->mem)
    vb->flags |= V4L2_BUF_FLAG_MAPPED;
  if (b->state == B_QUEUED)
    vb->flags |= V4L2_BUF_FLAG_QUEUED;
  if (b->state == B_DONE)
    vb->flags |= V4L2_BUF_FLAG_DONE;
  if (b->state != B_QUEUED) {
    vb->bytesused = b->bytesused;
    vb->sequence = (uint32_t) b->seq;
    vb->timestamp.tv_sec = (time_t) (b->ts_ns / 1000000000ull);
    vb->timestamp.tv_usec = (suseconds_t) (b->ts_ns % 1000000000ull / 1000);
    vb->flags |= b->flags;
  }
}

/* -- ioctl ------------------------------------------------------------------------------------------------ */

static struct tc_fmt *
find_fmt (struct tc_file *f, uint32_t fourcc)
{
  for (int i = 0; i < f->dev.nfmts; i++)
    if (f->dev.fmts[i].fourcc == fourcc)
      return &f->dev.fmts[i];
  return NULL;
}

/* uvcvideo's try_format: the format asked for (else the first), the size nearest to the one asked for. */
static void
try_format (struct tc_file *f, struct v4l2_pix_format *pix, struct tc_fmt **fmt_out, struct tc_size **size_out)
{
  struct tc_fmt *fmt = find_fmt (f, pix->pixelformat);
  if (!fmt)
    fmt = &f->dev.fmts[0];
  struct tc_size *best = &fmt->sizes[0];
  long best_d = -1;
  for (int i = 0; i < fmt->nsizes; i++) {
    long dw = (long) fmt->sizes[i].w - pix->width, dh = (long) fmt->sizes[i].h - pix->height;
    long d = dw * dw + dh * dh;
    if (best_d < 0 || d < best_d) {
      best_d = d;
      best = &fmt->sizes[i];
    }
  }
  memset (pix, 0, sizeof *pix);
  pix->pixelformat = fmt->fourcc;
  pix->width = best->w;
  pix->height = best->h;
  pix->field = V4L2_FIELD_NONE;
  pix->bytesperline = fmt->compressed ? 0 : best->w * 2;
  pix->sizeimage = best->sizeimage;
  pix->colorspace = V4L2_COLORSPACE_SRGB;
  pix->xfer_func = V4L2_XFER_FUNC_DEFAULT;
  pix->ycbcr_enc = V4L2_YCBCR_ENC_DEFAULT;
  pix->quantization = V4L2_QUANTIZATION_DEFAULT;
  *fmt_out = fmt;
  *size_out = best;
}

static struct tc_ctrl *
find_ctrl (struct tc_file *f, uint32_t id)
{
  for (int i = 0; i < f->dev.nctrls; i++)
    if (f->dev.ctrls[i].id == id)
      return &f->dev.ctrls[i];
  return NULL;
}

static uint32_t
ctrl_class_of (uint32_t id)
{
  return id & 0x0fff0000;
}

/* The control classes present, as the kernel reports them (a CTRL_CLASS pseudo-control per class). */
static int
is_class_ctrl (struct tc_file *f, uint32_t id)
{
  if ((id & 0xffff) != 1)
    return 0;
  for (int i = 0; i < f->dev.nctrls; i++)
    if (ctrl_class_of (f->dev.ctrls[i].id) == ctrl_class_of (id))
      return 1;
  return 0;
}

/* The next control id after `id` (classes included, in id order), or 0. */
static uint32_t
next_ctrl (struct tc_file *f, uint32_t id)
{
  uint32_t best = 0;
  for (int i = 0; i < f->dev.nctrls; i++) {
    uint32_t c = f->dev.ctrls[i].id, cls = ctrl_class_of (c) | 1;
    if (cls > id && (!best || cls < best))
      best = cls;
    if (c > id && (!best || c < best))
      best = c;
  }
  return best;
}

static int
query_ctrl (struct tc_file *f, uint32_t id, struct v4l2_query_ext_ctrl *q)
{
  memset (q, 0, sizeof *q);
  q->id = id;
  if (is_class_ctrl (f, id)) {
    q->type = V4L2_CTRL_TYPE_CTRL_CLASS;
    q->flags = V4L2_CTRL_FLAG_READ_ONLY | V4L2_CTRL_FLAG_WRITE_ONLY;
    snprintf (q->name, sizeof q->name, "%s", ctrl_class_of (id) == V4L2_CTRL_CLASS_CAMERA ? "Camera Controls"
        : "User Controls");
    q->elem_size = 4;
    q->elems = 1;
    q->nr_of_dims = 0;
    return 0;
  }
  struct tc_ctrl *c = find_ctrl (f, id);
  if (!c)
    return -EINVAL;
  q->type = c->type;
  snprintf (q->name, sizeof q->name, "%s", c->name);
  q->minimum = c->min;
  q->maximum = c->max;
  q->step = (uint64_t) c->step;
  q->default_value = c->def;
  q->elem_size = 4;
  q->elems = 1;
  char out[64];
  int r = request (f, out, sizeof out, "QCTRL %u", id);   /* the flags of the moment (inactive) */
  if (r < 0)
    return r;
  q->flags = (uint32_t) strtoul (out, NULL, 10);
  return 0;
}

static int
get_ctrl (struct tc_file *f, uint32_t id, int32_t *value)
{
  struct tc_ctrl *c = find_ctrl (f, id);
  if (!c)
    return -EINVAL;
  char out[64];
  int r = request (f, out, sizeof out, "GCTRL %u", id);
  if (r == 0)
    *value = (int32_t) strtol (out, NULL, 10);
  return r;
}

static int
set_ctrl (struct tc_file *f, uint32_t id, int32_t *value, int try_only)
{
  struct tc_ctrl *c = find_ctrl (f, id);
  if (!c)
    return -EINVAL;
  char out[64];
  int r = request (f, out, sizeof out, "%s %u %d", try_only ? "TCTRL" : "SCTRL", id, *value);
  if (r == 0)
    *value = (int32_t) strtol (out, NULL, 10);
  return r;
}

static int
ext_ctrls (struct tc_file *f, struct v4l2_ext_controls *ec, int op)
{
  /* op: 0 get, 1 set, 2 try. The whole set is checked before anything is applied (error_idx = count). */
  for (uint32_t i = 0; i < ec->count; i++) {
    if (is_class_ctrl (f, ec->controls[i].id)) {  /* write-only for G, read-only for S/TRY */
      ec->error_idx = op == 0 ? i : ec->count;
      return -EACCES;
    }
    if (!find_ctrl (f, ec->controls[i].id)) {
      ec->error_idx = op == 0 ? i : ec->count;
      return -EINVAL;
    }
  }
  for (uint32_t i = 0; i < ec->count; i++) {
    struct v4l2_ext_control *x = &ec->controls[i];
    int32_t value = x->value;
    int r = op == 0 ? get_ctrl (f, x->id, &value) : set_ctrl (f, x->id, &value, op == 2);
    x->value = value;
    if (r < 0) {
      ec->error_idx = i;
      return r;
    }
  }
  return 0;
}

static int
do_ioctl (struct tc_file *f, unsigned long req, void *arg)
{
  if (unplugged (f))
    return -ENODEV;
  if (_IOC_TYPE (req) != 'V')
    return -ENOTTY;
  if (_IOC_SIZE (req) && !arg && req != VIDIOC_LOG_STATUS && req != VIDIOC_DBG_G_REGISTER
      && req != VIDIOC_DBG_S_REGISTER && _IOC_NR (req) <= _IOC_NR (VIDIOC_QUERY_EXT_CTRL))
    return -EFAULT;             /* as the kernel's copy_from_user would */
  switch (req) {
    case VIDIOC_QUERYCAP:{
      struct v4l2_capability *cap = arg;
      memset (cap, 0, sizeof *cap);
      snprintf ((char *) cap->driver, sizeof cap->driver, "%s", f->dev.driver);
      snprintf ((char *) cap->card, sizeof cap->card, "%s", f->dev.card);
      snprintf ((char *) cap->bus_info, sizeof cap->bus_info, "%s", f->dev.bus);
      cap->version = (6 << 16) | (1 << 8);
      cap->device_caps = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING | V4L2_CAP_EXT_PIX_FORMAT;
      cap->capabilities = cap->device_caps | V4L2_CAP_DEVICE_CAPS | V4L2_CAP_META_CAPTURE;
      return 0;
    }
    case VIDIOC_ENUM_FMT:{
      struct v4l2_fmtdesc *d = arg;
      if (d->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || d->index >= (uint32_t) f->dev.nfmts)
        return -EINVAL;
      struct tc_fmt *fmt = &f->dev.fmts[d->index];
      uint32_t index = d->index, type = d->type;
      memset (d, 0, sizeof *d);
      d->index = index;
      d->type = type;
      d->pixelformat = fmt->fourcc;
      d->flags = fmt->compressed ? V4L2_FMT_FLAG_COMPRESSED : 0;
      snprintf ((char *) d->description, sizeof d->description, "%s", fmt->desc);
      return 0;
    }
    case VIDIOC_ENUM_FRAMESIZES:{
      struct v4l2_frmsizeenum *e = arg;
      struct tc_fmt *fmt = find_fmt (f, e->pixel_format);
      if (!fmt || e->index >= (uint32_t) fmt->nsizes)
        return -EINVAL;
      e->type = V4L2_FRMSIZE_TYPE_DISCRETE;
      e->discrete.width = fmt->sizes[e->index].w;
      e->discrete.height = fmt->sizes[e->index].h;
      memset (e->reserved, 0, sizeof e->reserved);
      return 0;
    }
    case VIDIOC_ENUM_FRAMEINTERVALS:{
      struct v4l2_frmivalenum *e = arg;
      struct tc_fmt *fmt = find_fmt (f, e->pixel_format);
      if (!fmt)
        return -EINVAL;
      for (int i = 0; i < fmt->nsizes; i++) {
        struct tc_size *z = &fmt->sizes[i];
        if (z->w == e->width && z->h == e->height) {
          if (e->index >= (uint32_t) z->nrates)
            return -EINVAL;
          e->type = V4L2_FRMIVAL_TYPE_DISCRETE;
          e->discrete.numerator = 1;
          e->discrete.denominator = z->fps[e->index];
          memset (e->reserved, 0, sizeof e->reserved);
          return 0;
        }
      }
      return -EINVAL;
    }
    case VIDIOC_G_FMT:{
      struct v4l2_format *fm = arg;
      if (fm->type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
        return -EINVAL;
      memset (&fm->fmt, 0, sizeof fm->fmt);
      fm->fmt.pix.pixelformat = f->fourcc;
      fm->fmt.pix.width = f->width;
      fm->fmt.pix.height = f->height;
      fm->fmt.pix.field = V4L2_FIELD_NONE;
      fm->fmt.pix.bytesperline = f->bytesperline;
      fm->fmt.pix.sizeimage = f->sizeimage;
      fm->fmt.pix.colorspace = V4L2_COLORSPACE_SRGB;
      return 0;
    }
    case VIDIOC_TRY_FMT:
    case VIDIOC_S_FMT:{
      struct v4l2_format *fm = arg;
      if (fm->type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
        return -EINVAL;
      struct tc_fmt *fmt;
      struct tc_size *size;
      try_format (f, &fm->fmt.pix, &fmt, &size);
      if (req == VIDIOC_TRY_FMT)
        return 0;
      if (f->nbufs > 0)          /* vb2: no format change with buffers allocated */
        return -EBUSY;
      char cc[5] = { 0 };
      memcpy (cc, &fmt->fourcc, 4);
      int r = request (f, NULL, 0, "SFMT %s %u %u", cc, size->w, size->h);
      if (r < 0)
        return r;
      f->fourcc = fmt->fourcc;
      f->width = size->w;
      f->height = size->h;
      f->sizeimage = size->sizeimage;
      f->bytesperline = fm->fmt.pix.bytesperline;
      int ok = 0;
      for (int i = 0; i < size->nrates; i++)
        ok |= size->fps[i] == f->fps;
      if (!ok)                  /* uvc keeps the nearest interval the new size offers */
        f->fps = size->fps[0];
      return request (f, NULL, 0, "PARM %u", f->fps);
    }
    case VIDIOC_G_PARM:
    case VIDIOC_S_PARM:{
      struct v4l2_streamparm *p = arg;
      if (p->type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
        return -EINVAL;
      if (req == VIDIOC_S_PARM) {
        struct v4l2_fract tpf = p->parm.capture.timeperframe;
        struct tc_fmt *fmt = find_fmt (f, f->fourcc);
        uint32_t want = tpf.numerator ? (tpf.denominator + tpf.numerator / 2) / tpf.numerator : 0;
        uint32_t best = f->fps;
        for (int i = 0; fmt && i < fmt->nsizes; i++) {
          struct tc_size *z = &fmt->sizes[i];
          if (z->w != f->width || z->h != f->height)
            continue;
          long bd = -1;
          for (int k = 0; k < z->nrates; k++) {
            long d = labs ((long) z->fps[k] - (long) want);
            if (bd < 0 || d < bd) {
              bd = d;
              best = z->fps[k];
            }
          }
        }
        int r = request (f, NULL, 0, "PARM %u", best);
        if (r < 0)
          return r;
        f->fps = best;
      }
      memset (&p->parm, 0, sizeof p->parm);
      p->parm.capture.capability = V4L2_CAP_TIMEPERFRAME;
      p->parm.capture.timeperframe.numerator = 1;
      p->parm.capture.timeperframe.denominator = f->fps;
      p->parm.capture.readbuffers = 0;
      return 0;
    }
    case VIDIOC_ENUMINPUT:{
      struct v4l2_input *in = arg;
      if (in->index != 0)
        return -EINVAL;
      memset (in, 0, sizeof *in);
      snprintf ((char *) in->name, sizeof in->name, "Camera 1");
      in->type = V4L2_INPUT_TYPE_CAMERA;
      return 0;
    }
    case VIDIOC_G_INPUT:
      *(int *) arg = 0;
      return 0;
    case VIDIOC_S_INPUT:
      return *(int *) arg == 0 ? 0 : -EINVAL;
    case VIDIOC_G_PRIORITY:
      *(uint32_t *) arg = V4L2_PRIORITY_DEFAULT;
      return 0;
    case VIDIOC_S_PRIORITY:
      return 0;
    case VIDIOC_QUERYCTRL:{
      struct v4l2_queryctrl *q = arg;
      uint32_t id = q->id & ~(V4L2_CTRL_FLAG_NEXT_CTRL | V4L2_CTRL_FLAG_NEXT_COMPOUND);
      if (q->id & V4L2_CTRL_FLAG_NEXT_CTRL)
        id = next_ctrl (f, id);
      struct v4l2_query_ext_ctrl x;
      int r = id ? query_ctrl (f, id, &x) : -EINVAL;
      if (r < 0)
        return r;
      memset (q, 0, sizeof *q);
      q->id = x.id;
      q->type = x.type;
      snprintf ((char *) q->name, sizeof q->name, "%s", x.name);
      q->minimum = (int32_t) x.minimum;
      q->maximum = (int32_t) x.maximum;
      q->step = (int32_t) x.step;
      q->default_value = (int32_t) x.default_value;
      q->flags = x.flags;
      return 0;
    }
    case VIDIOC_QUERY_EXT_CTRL:{
      struct v4l2_query_ext_ctrl *q = arg;
      uint32_t id = q->id & ~(V4L2_CTRL_FLAG_NEXT_CTRL | V4L2_CTRL_FLAG_NEXT_COMPOUND);
      if (q->id & (V4L2_CTRL_FLAG_NEXT_CTRL | V4L2_CTRL_FLAG_NEXT_COMPOUND))
        id = (q->id & V4L2_CTRL_FLAG_NEXT_CTRL) ? next_ctrl (f, id) : 0;
      if (!id)
        return -EINVAL;
      return query_ctrl (f, id, q);
    }
    case VIDIOC_QUERYMENU:{
      struct v4l2_querymenu *m = arg;
      struct tc_ctrl *c = find_ctrl (f, m->id);
      if (!c || c->type != V4L2_CTRL_TYPE_MENU)
        return -EINVAL;
      for (int i = 0; i < c->nmenu; i++)
        if ((uint32_t) c->menu_idx[i] == m->index) {
          snprintf ((char *) m->name, sizeof m->name, "%s", c->menu_name[i]);
          m->reserved = 0;
          return 0;
        }
      return -EINVAL;
    }
    case VIDIOC_G_CTRL:{
      struct v4l2_control *c = arg;
      return get_ctrl (f, c->id, &c->value);
    }
    case VIDIOC_S_CTRL:{
      struct v4l2_control *c = arg;
      return set_ctrl (f, c->id, &c->value, 0);
    }
    case VIDIOC_G_EXT_CTRLS:
      return ext_ctrls (f, arg, 0);
    case VIDIOC_S_EXT_CTRLS:
      return ext_ctrls (f, arg, 1);
    case VIDIOC_TRY_EXT_CTRLS:
      return ext_ctrls (f, arg, 2);
    case VIDIOC_REQBUFS:{
      struct v4l2_requestbuffers *rb = arg;
      if (rb->type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
        return -EINVAL;
      if (rb->memory != V4L2_MEMORY_MMAP)
        return -EINVAL;
      rb->capabilities = V4L2_BUF_CAP_SUPPORTS_MMAP | V4L2_BUF_CAP_SUPPORTS_ORPHANED_BUFS;
      memset (rb->reserved, 0, sizeof rb->reserved);
      if (f->streaming) {
        if (rb->count == 0)
          return -EBUSY;
        return -EBUSY;
      }
      for (int i = 0; i < f->nbufs; i++)
        if (f->bufs[i].mem) {
          real_munmap (f->bufs[i].mem, f->bufs[i].length);
          f->bufs[i].mem = NULL;
        }
      f->nbufs = 0;
      f->nqueued = f->ndone = 0;
      if (rb->count == 0)
        return request (f, NULL, 0, "RELEASE");      /* EBUSY while another handle owns the queue */
      int r = request (f, NULL, 0, "ACQUIRE");
      if (r < 0)
        return r;
      uint32_t n = rb->count < 2 ? 2 : rb->count;
      if (n > MAX_BUFS)
        n = MAX_BUFS;
      for (uint32_t i = 0; i < n; i++) {
        memset (&f->bufs[i], 0, sizeof f->bufs[i]);
        f->bufs[i].length = f->sizeimage;
        f->bufs[i].state = B_USER;
      }
      f->nbufs = (int) n;
      rb->count = n;
      return 0;
    }
    case VIDIOC_CREATE_BUFS:
      return -ENOTTY;
    case VIDIOC_SUBSCRIBE_EVENT:{
      struct v4l2_event_subscription *sub = arg;
      if (sub->type != V4L2_EVENT_CTRL || (!find_ctrl (f, sub->id) && !is_class_ctrl (f, sub->id)))
        return -EINVAL;
      return 0;                 /* accepted; this camera raises no control events (none changes by itself) */
    }
    case VIDIOC_UNSUBSCRIBE_EVENT:
      return 0;
    case VIDIOC_DQEVENT:
      return -ENOENT;
    case VIDIOC_QUERYBUF:{
      struct v4l2_buffer *vb = arg;
      if (vb->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || vb->index >= (uint32_t) f->nbufs)
        return -EINVAL;
      fill_buffer (f, (int) vb->index, vb);
      return 0;
    }
    case VIDIOC_QBUF:{
      struct v4l2_buffer *vb = arg;
      if (vb->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || vb->memory != V4L2_MEMORY_MMAP
          || vb->index >= (uint32_t) f->nbufs)
        return -EINVAL;
      struct tc_buf *b = &f->bufs[vb->index];
      if (vb->flags & V4L2_BUF_FLAG_REQUEST_FD)
        return -EBADR;          /* no Request API on uvcvideo */
      if (b->state != B_USER)
        return -EINVAL;
      b->state = B_QUEUED;
      f->queued[f->nqueued++] = (int) vb->index;
      fill_buffer (f, (int) vb->index, vb);
      return 0;
    }
    case VIDIOC_STREAMON:
    case VIDIOC_STREAMOFF:{
      if (*(int *) arg != V4L2_BUF_TYPE_VIDEO_CAPTURE)
        return -EINVAL;
      if (req == VIDIOC_STREAMON) {
        if (f->nbufs == 0)
          return -EINVAL;
        if (f->streaming)
          return 0;
        int r = request (f, NULL, 0, "STREAMON");
        if (r < 0)
          return r;
        f->streaming = 1;
        return 0;
      }
      if (f->streaming)
        request (f, NULL, 0, "STREAMOFF");
      f->streaming = 0;
      drain (f);                /* notifications in flight are dropped */
      for (int i = 0; i < f->nbufs; i++)
        f->bufs[i].state = B_USER;
      f->nqueued = f->ndone = 0;
      return 0;
    }
    case VIDIOC_EXPBUF:
    case VIDIOC_G_STD:
    case VIDIOC_S_STD:
    case VIDIOC_ENUMSTD:
    case VIDIOC_QUERYSTD:
    case VIDIOC_CROPCAP:
    case VIDIOC_G_CROP:
    case VIDIOC_S_CROP:
    case VIDIOC_G_SELECTION:
    case VIDIOC_S_SELECTION:
    case VIDIOC_G_JPEGCOMP:
    case VIDIOC_S_JPEGCOMP:
    case VIDIOC_ENUMAUDIO:
    case VIDIOC_G_AUDIO:
    case VIDIOC_G_TUNER:
    case VIDIOC_G_FBUF:
    case VIDIOC_G_EDID:
    case VIDIOC_QUERY_DV_TIMINGS:
    case VIDIOC_G_DV_TIMINGS:
    case VIDIOC_ENUM_DV_TIMINGS:
    case VIDIOC_DV_TIMINGS_CAP:
    case VIDIOC_LOG_STATUS:
    case VIDIOC_G_OUTPUT:
    case VIDIOC_ENUMOUTPUT:
    case VIDIOC_G_FREQUENCY:
    case VIDIOC_G_MODULATOR:
    case VIDIOC_G_ENC_INDEX:
    case VIDIOC_ENCODER_CMD:
    case VIDIOC_DECODER_CMD:
    case VIDIOC_G_SLICED_VBI_CAP:
      return -ENOTTY;
    default:
      return -ENOTTY;
  }
}

/* DQBUF: the oldest filled buffer; waits for one unless the file is non-blocking (EAGAIN). */
static int
dqbuf (struct tc_file *f, struct v4l2_buffer *vb)
{
  if (!vb)
    return -EFAULT;
  if (vb->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || vb->memory != V4L2_MEMORY_MMAP)
    return -EINVAL;
  for (;;) {
    pthread_mutex_lock (&f->lock);
    if (unplugged (f)) {
      pthread_mutex_unlock (&f->lock);
      return -ENODEV;
    }
    if (!f->streaming) {
      pthread_mutex_unlock (&f->lock);
      return -EINVAL;
    }
    drain (f);
    if (f->ndone > 0) {
      int idx = f->done[0];
      memmove (f->done, f->done + 1, sizeof (int) * (size_t) --f->ndone);
      f->bufs[idx].state = B_USER;
      fill_buffer (f, idx, vb);
      vb->flags &= ~V4L2_BUF_FLAG_DONE;
      pthread_mutex_unlock (&f->lock);
      return 0;
    }
    int nonblock = f->nonblock, fd = f->fd;
    pthread_mutex_unlock (&f->lock);
    if (nonblock)
      return -EAGAIN;
    struct pollfd p = { .fd = fd, .events = POLLIN };
    if (real_poll (&p, 1, 1000) < 0 && errno != EINTR)
      return -EIO;
  }
}

int
ioctl (int fd, unsigned long req, ...)
{
  INIT ();
  va_list ap;
  va_start (ap, req);
  void *arg = va_arg (ap, void *);
  va_end (ap);
  struct tc_file *f = file_of (fd);
  if (!f)
    return real_ioctl (fd, req, arg);
  int r;
  if (req == VIDIOC_DQBUF) {
    r = dqbuf (f, arg);
  } else {
    pthread_mutex_lock (&f->lock);
    r = do_ioctl (f, req, arg);
    pthread_mutex_unlock (&f->lock);
  }
  if (r < 0) {
    errno = -r;
    return -1;
  }
  return r;
}

/* -- mmap ------------------------------------------------------------------------------------------------- */

void *
mmap (void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
  INIT ();
  struct tc_file *f = fd >= 0 ? file_of (fd) : NULL;
  if (!f)
    return real_mmap (addr, len, prot, flags, fd, off);
  pthread_mutex_lock (&f->lock);
  void *res = MAP_FAILED;
  int err = EINVAL;
  for (int i = 0; i < f->nbufs; i++) {
    struct tc_buf *b = &f->bufs[i];
    off_t boff = (off_t) ((size_t) i * ((b->length + 4095) & ~(size_t) 4095));
    if (boff == off && len <= ((b->length + 4095) & ~(size_t) 4095)) {
      if (!b->mem) {
        b->mem = real_mmap (NULL, b->length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (b->mem == MAP_FAILED) {
          b->mem = NULL;
          err = ENOMEM;
          break;
        }
      }
      res = b->mem;
      break;
    }
  }
  pthread_mutex_unlock (&f->lock);
  if (res == MAP_FAILED)
    errno = err;
  return res;
}

void *mmap64 (void *addr, size_t len, int prot, int flags, int fd, off_t off) __attribute__ ((alias ("mmap")));

int
munmap (void *addr, size_t len)
{
  INIT ();
  pthread_mutex_lock (&table_lock);
  for (int fd = 0; fd < MAX_FILES; fd++) {
    struct tc_file *f = files[fd];
    if (!f)
      continue;
    for (int i = 0; i < f->nbufs; i++)
      if (f->bufs[i].mem == addr) {
        pthread_mutex_unlock (&table_lock);
        return 0;               /* the buffer's memory lives until REQBUFS(0) or close, as vb2's does */
      }
  }
  pthread_mutex_unlock (&table_lock);
  return real_munmap (addr, len);
}

/* -- poll, ppoll, select ---------------------------------------------------------------------------------- */

/* What vb2_poll says for one of our files, without waiting: POLLERR when unplugged or not streaming, POLLIN
 * when a filled buffer waits; 0 when the real poll must decide. */
static short
own_revents (struct tc_file *f, short events)
{
  short r = 0;
  pthread_mutex_lock (&f->lock);
  if (unplugged (f) || !f->streaming)
    r = POLLERR;
  else {
    drain (f);
    if (f->ndone > 0)
      r = (short) (events & (POLLIN | POLLRDNORM));
  }
  pthread_mutex_unlock (&f->lock);
  return r;
}

static int
tc_poll (struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *mask)
{
  int ours = 0;
  for (nfds_t i = 0; i < n; i++)
    if (file_of (fds[i].fd))
      ours = 1;
  if (!ours)
    return real_ppoll (fds, n, timeout, mask);
  struct timespec start, now;
  clock_gettime (CLOCK_MONOTONIC, &start);
  for (;;) {
    int ready = 0;
    short own[n > 0 ? n : 1];
    for (nfds_t i = 0; i < n; i++) {
      struct tc_file *f = file_of (fds[i].fd);
      own[i] = f ? own_revents (f, fds[i].events) : 0;
      ready |= own[i] != 0;
    }
    struct timespec zero = { 0, 0 }, left;
    const struct timespec *wait = timeout;
    if (ready)
      wait = &zero;
    else if (timeout) {
      clock_gettime (CLOCK_MONOTONIC, &now);
      long long el = (now.tv_sec - start.tv_sec) * 1000000000ll + (now.tv_nsec - start.tv_nsec);
      long long rem = timeout->tv_sec * 1000000000ll + timeout->tv_nsec - el;
      if (rem < 0)
        rem = 0;
      left.tv_sec = (time_t) (rem / 1000000000ll);
      left.tv_nsec = (long) (rem % 1000000000ll);
      wait = &left;
    }
    int r = real_ppoll (fds, n, wait, mask);
    if (r < 0)
      return r;
    int count = 0, pending_own = 0;
    for (nfds_t i = 0; i < n; i++) {
      struct tc_file *f = file_of (fds[i].fd);
      if (f) {
        short got = fds[i].revents;
        fds[i].revents = own[i];
        if (!own[i] && (got & (POLLIN | POLLHUP | POLLERR))) {
          if (got & POLLHUP)
            fds[i].revents = POLLERR;           /* the daemon went away: as an unplug */
          else {
            fds[i].revents = own_revents (f, fds[i].events);
            if (!fds[i].revents)
              pending_own = 1;                  /* a frame arrived with no buffer queued: wait on */
          }
        }
      }
      if (fds[i].revents)
        count++;
    }
    if (count > 0 || (!pending_own))
      return count;
    if (timeout) {
      clock_gettime (CLOCK_MONOTONIC, &now);
      long long el = (now.tv_sec - start.tv_sec) * 1000000000ll + (now.tv_nsec - start.tv_nsec);
      if (el >= timeout->tv_sec * 1000000000ll + timeout->tv_nsec)
        return 0;
    }
  }
}

int
poll (struct pollfd *fds, nfds_t n, int timeout_ms)
{
  INIT ();
  if (timeout_ms < 0)
    return tc_poll (fds, n, NULL, NULL);
  struct timespec t = { timeout_ms / 1000, (long) (timeout_ms % 1000) * 1000000 };
  return tc_poll (fds, n, &t, NULL);
}

int
__poll_chk (struct pollfd *fds, nfds_t n, int timeout_ms, size_t fdslen)
{
  (void) fdslen;
  return poll (fds, n, timeout_ms);
}

int
ppoll (struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *mask)
{
  INIT ();
  return tc_poll (fds, n, timeout, mask);
}

int
__ppoll_chk (struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *mask, size_t len)
{
  (void) len;
  return ppoll (fds, n, timeout, mask);
}

int
select (int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
{
  INIT ();
  int ours = 0;
  for (int fd = 0; fd < nfds && fd < MAX_FILES; fd++)
    if (((rd && FD_ISSET (fd, rd)) || (ex && FD_ISSET (fd, ex))) && file_of (fd))
      ours = 1;
  if (!ours)
    return real_select (nfds, rd, wr, ex, tv);
  struct pollfd p[FD_SETSIZE];
  nfds_t n = 0;
  for (int fd = 0; fd < nfds; fd++) {
    short ev = (short) ((rd && FD_ISSET (fd, rd) ? POLLIN : 0) | (wr && FD_ISSET (fd, wr) ? POLLOUT : 0)
        | (ex && FD_ISSET (fd, ex) ? POLLPRI : 0));
    if (ev) {
      p[n].fd = fd;
      p[n].events = ev;
      p[n].revents = 0;
      n++;
    }
  }
  struct timespec t, *tp = NULL;
  if (tv) {
    t.tv_sec = tv->tv_sec;
    t.tv_nsec = tv->tv_usec * 1000;
    tp = &t;
  }
  int r = tc_poll (p, n, tp, NULL);
  if (r < 0)
    return r;
  if (rd)
    FD_ZERO (rd);
  if (wr)
    FD_ZERO (wr);
  if (ex)
    FD_ZERO (ex);
  int count = 0;
  for (nfds_t i = 0; i < n; i++) {
    /* select reports an fd in error as readable, as the kernel does */
    if (rd && (p[i].revents & (POLLIN | POLLERR | POLLHUP))) {
      FD_SET (p[i].fd, rd);
      count++;
    }
    if (wr && (p[i].revents & POLLOUT)) {
      FD_SET (p[i].fd, wr);
      count++;
    }
    if (ex && (p[i].revents & POLLPRI)) {
      FD_SET (p[i].fd, ex);
      count++;
    }
  }
  return count;
}
