/* The sandbox ("pause") container of every pod on the test node: holds the
 * pod's namespaces, reaps orphans, and exits on SIGINT or SIGTERM. Built
 * static (no libc in the image), like Kubernetes' own pause.c. */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction on_stop = {.sa_handler = stop}, on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
  if (getpid() != 1) {
    /* Not a sandbox: say so, but keep working (useful for a quick check). */
    write(2, "pause: not running as PID 1\n", 28);
  }
  sigaction(SIGINT, &on_stop, NULL);
  sigaction(SIGTERM, &on_stop, NULL);
  sigaction(SIGCHLD, &on_child, NULL);
  for (;;) pause();
}
