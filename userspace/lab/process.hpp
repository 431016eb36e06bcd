// Child processes for the lab: run a command to completion with captured output, or spawn a
// long-lived child; either optionally inside a network namespace.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <string>
#include <vector>

#include "lib/result.hpp"
#include "lib/unique_fd.hpp"

namespace kxlb::lab {

struct CommandResult {
    int exit_code = 0;  // the exit status, or 128 + signal number if the command was killed by a signal
    std::string out;    // everything written to stdout
    std::string err;    // everything written to stderr
};

// "a b 'c d'": argv quoted for messages.
std::string format_argv(const std::vector<std::string>& argv);

// A spawned child. RAII: the destructor signals the child's process group with SIGTERM, waits up to 2 s,
// then SIGKILLs it, and reaps the child. Children run in their own process group, with stdin on
// /dev/null, stdout+stderr on an in-memory file (never blocks the child), default signal dispositions,
// and PR_SET_PDEATHSIG(SIGKILL): they die when the thread that spawned them exits (spawn from a
// long-lived thread). Not thread-safe: use one Process from one thread at a time.
class Process {
public:
    Process() = default;  // an empty object (no child)
    ~Process();
    Process(Process&& o) noexcept;
    Process& operator=(Process&& o) noexcept;
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    pid_t pid() const { return pid_; }  // -1 if empty
    // Non-blocking: true while the child has not exited (reaps it once it has).
    bool running();
    // Waits up to `timeout` for the child to exit and returns its exit code (or 128 + signal).
    // Error ETIMEDOUT if it is still running; returns the cached code if it was already reaped.
    Result<int> wait(std::chrono::milliseconds timeout);
    // Sends `sig` to the child's process group (the child and descendants that stayed in it).
    // No-op once the child has been reaped.
    void kill(int sig = SIGTERM);
    // Everything the child (and its descendants) wrote to stdout and stderr so far, interleaved.
    std::string output() const;

private:
    friend Result<Process> spawn(const std::vector<std::string>& argv, const std::string& netns_path);
    Process(pid_t pid, UniqueFd pidfd, UniqueFd output)
        : pid_(pid), pidfd_(std::move(pidfd)), out_(std::move(output)) {}
    bool wait_exited(std::chrono::milliseconds timeout) const;  // polls the pidfd; does not reap
    void reap();                                                // blocking waitpid; only once exited
    void terminate() noexcept;                                  // the destructor's sequence

    pid_t pid_ = -1;
    UniqueFd pidfd_;
    UniqueFd out_;  // memfd shared with the child as stdout and stderr
    bool reaped_ = false;
    int exit_code_ = -1;
};

// Runs argv (argv[0] looked up in PATH) to completion, inside the netns at `netns_path` if non-empty
// (e.g. "/run/netns/NAME"; the child setns()es, so /proc/sys/net is the namespace's, /sys is not
// remounted). A non-zero exit is not an error: check exit_code. Errors: empty argv, unopenable netns,
// exec failure (ENOENT for an unknown command), or the timeout (ETIMEDOUT; the process group is
// SIGKILLed and reaped, the message includes the output so far). Output after the child has exited is
// collected only while its descendants close their ends within a short grace period.
Result<CommandResult> run_command(const std::vector<std::string>& argv,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(10),
                                  const std::string& netns_path = "");

// Starts argv as a long-lived child (see Process), inside the netns at `netns_path` if non-empty.
// Returns only after the exec succeeded; exec/setns failures are returned as errors.
Result<Process> spawn(const std::vector<std::string>& argv, const std::string& netns_path = "");

}  // namespace kxlb::lab
