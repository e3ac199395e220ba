/*
 * pause: pid 1 of a pod sandbox. It holds the pod's network, IPC and UTS
 * namespaces open for the pod's containers, reaps any child reparented to
 * it, and exits 0 on SIGINT or SIGTERM. Linked statically so the sandbox's
 * root filesystem holds nothing but this file.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
  (void)sig;
  _exit(0);
}

static void on_child(int sig) {
  (void)sig;
  int saved = errno;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    puts("rkube pause 1");
    return 0;
  }
  if (getpid() != 1) {
    fprintf(stderr, "pause: warning: not pid 1, reaping only my own children\n");
  }
  struct sigaction stop = {0};
  stop.sa_handler = on_stop;
  if (sigaction(SIGINT, &stop, NULL) < 0 || sigaction(SIGTERM, &stop, NULL) < 0) {
    perror("pause: sigaction");
    return 1;
  }
  struct sigaction child = {0};
  child.sa_handler = on_child;
  child.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  if (sigaction(SIGCHLD, &child, NULL) < 0) {
    perror("pause: sigaction");
    return 1;
  }
  for (;;) {
    pause();
  }
}
