// Child processes for the lab: fork + (setns) + exec with output capture, pidfd-based bounded waits.
#include "lab/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <utility>

namespace kxlb::lab {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kExecReportTimeout{10000};  // how long the parent waits for exec to happen
constexpr milliseconds kTermGrace{2000};           // SIGTERM -> SIGKILL in ~Process
constexpr milliseconds kKillGrace{5000};           // SIGKILL -> give up reaping
constexpr milliseconds kOutputGrace{200};          // output drained after the child exited

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }
int pidfd_send_signal(int pidfd, int sig) {
    return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

// What a child reports through its CLOEXEC status pipe when it fails before exec succeeds.
enum class Stage : int { Setns = 1, Stdio = 2, Exec = 3 };
struct ChildReport {
    Stage stage;
    int err;
};

const char* to_string(Stage s) {
    switch (s) {
        case Stage::Setns: return "enter netns for";
        case Stage::Stdio: return "set up stdio for";
        case Stage::Exec: return "exec";
    }
    return "start";
}

int to_exit_code(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

// dup2 that also clears FD_CLOEXEC when from == to (dup2 is then a no-op). Async-signal-safe.
bool move_fd(int from, int to) {
    if (from == to) return ::fcntl(to, F_SETFD, 0) == 0;
    return ::dup2(from, to) == to;
}

[[noreturn]] void child_fail(int report_fd, Stage stage, int err) {
    ChildReport r{stage, err};
    ssize_t n = ::write(report_fd, &r, sizeof r);
    (void)n;
    ::_exit(127);
}

// Runs in the forked child: only async-signal-safe calls from here on.
[[noreturn]] void child_main(char* const* argv, pid_t parent, int netns_fd, int out_fd, int err_fd, int report_fd) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl took effect
    ::setpgid(0, 0);

    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);  // fails harmlessly for some
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);

    if (netns_fd >= 0 && ::setns(netns_fd, CLONE_NEWNET) != 0) child_fail(report_fd, Stage::Setns, errno);

    int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0 || !move_fd(devnull, STDIN_FILENO)) child_fail(report_fd, Stage::Stdio, errno);
    if (!move_fd(out_fd, STDOUT_FILENO) || !move_fd(err_fd, STDERR_FILENO)) child_fail(report_fd, Stage::Stdio, errno);

    ::execvp(argv[0], argv);
    child_fail(report_fd, Stage::Exec, errno);
}

struct Started {
    pid_t pid;
    UniqueFd pidfd;
};

void kill_group_and_child(pid_t pid, int pidfd, int sig) {
    ::kill(-pid, sig);  // safe while the child is unreaped: its pid (= pgid) cannot be reused
    if (pidfd >= 0) pidfd_send_signal(pidfd, sig);
}

// Waits (bounded) for the pidfd to become readable, i.e. the child exited. Does not reap.
bool poll_exit(int pidfd, milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
        auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
        pollfd p{pidfd, POLLIN, 0};
        int r = ::poll(&p, 1, static_cast<int>(std::max<milliseconds::rep>(left.count(), 0)));
        if (r > 0) return true;
        if (r == 0) return false;
        if (errno != EINTR) return false;
    }
}

int reap_blocking(pid_t pid) {
    int status = 0;
    for (;;) {
        pid_t r = ::waitpid(pid, &status, 0);
        if (r == pid) return to_exit_code(status);
        if (r < 0 && errno == EINTR) continue;
        return -1;  // ECHILD: someone else reaped it (SIGCHLD ignored or a foreign waitpid(-1))
    }
}

// Forks and execs argv with stdout/stderr on out_fd/err_fd, inside netns_path if non-empty.
// Returns once exec succeeded; on failure the child is reaped and the error returned.
Result<Started> start_child(const std::vector<std::string>& argv, const std::string& netns_path, int out_fd,
                            int err_fd) {
    if (argv.empty() || argv[0].empty()) return Error::invalid("run: empty argv");
    std::vector<std::string> args = argv;  // stable storage for the char* array
    std::vector<char*> cargv;
    cargv.reserve(args.size() + 1);
    for (auto& a : args) cargv.push_back(a.data());
    cargv.push_back(nullptr);

    UniqueFd netns;
    if (!netns_path.empty()) {
        netns.reset(::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!netns.valid()) return Error::from_errno(errno, "open netns " + netns_path);
    }
    int report[2];
    if (::pipe2(report, O_CLOEXEC) != 0) return Error::from_errno(errno, "pipe2");
    UniqueFd report_r(report[0]), report_w(report[1]);

    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) return Error::from_errno(errno, "fork for " + format_argv(argv));
    if (pid == 0) child_main(cargv.data(), parent, netns.get(), out_fd, err_fd, report_w.get());

    ::setpgid(pid, pid);  // also done by the child; whichever runs first wins the race with kill(-pid)
    report_w.reset();
    UniqueFd pidfd(pidfd_open(pid));
    int pidfd_errno = errno;

    // EOF on the report pipe means exec succeeded (CLOEXEC); a ChildReport means it failed.
    ChildReport rep{};
    ssize_t got = 0;
    auto deadline = Clock::now() + kExecReportTimeout;
    for (;;) {
        auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
        pollfd p{report_r.get(), POLLIN, 0};
        int r = ::poll(&p, 1, static_cast<int>(std::max<long>(left, 0)));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            got = -1;
            break;
        }
        got = ::read(report_r.get(), &rep, sizeof rep);
        if (got < 0 && errno == EINTR) continue;
        break;
    }
    if (got != 0 || !pidfd.valid()) {
        kill_group_and_child(pid, pidfd.get(), SIGKILL);
        if (!pidfd.valid() || poll_exit(pidfd.get(), kKillGrace)) reap_blocking(pid);
        if (got == static_cast<ssize_t>(sizeof rep))
            return Error::from_errno(rep.err, std::string(to_string(rep.stage)) + " " + format_argv(argv) +
                                                  (netns_path.empty() ? "" : " in " + netns_path));
        if (!pidfd.valid()) return Error::from_errno(pidfd_errno, "pidfd_open for " + format_argv(argv));
        return Error{ETIMEDOUT, "start " + format_argv(argv) + ": child did not exec in time"};
    }
    return Started{pid, std::move(pidfd)};
}

void read_available(int fd, std::string& into, bool& open) {
    char buf[16384];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n > 0) {
            into.append(buf, static_cast<size_t>(n));
            continue;
        }
        if (n == 0) open = false;
        if (n < 0 && errno == EINTR) continue;
        return;  // EOF or EAGAIN (or a real error: treat as "nothing more for now")
    }
}

}  // namespace

std::string format_argv(const std::vector<std::string>& argv) {
    std::string out;
    for (const auto& a : argv) {
        if (!out.empty()) out += ' ';
        bool plain = !a.empty() && std::all_of(a.begin(), a.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("-_./:=,@%+", c) != nullptr;
        });
        if (plain) {
            out += a;
            continue;
        }
        out += '\'';
        for (char c : a) {
            if (c == '\'') out += "'\\''";
            else out += c;
        }
        out += '\'';
    }
    return out;
}

// ---- run_command ---------------------------------------------------------------------------

Result<CommandResult> run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                                  const std::string& netns_path) {
    int out_p[2], err_p[2];
    if (::pipe2(out_p, O_CLOEXEC) != 0) return Error::from_errno(errno, "pipe2");
    UniqueFd out_r(out_p[0]), out_w(out_p[1]);
    if (::pipe2(err_p, O_CLOEXEC) != 0) return Error::from_errno(errno, "pipe2");
    UniqueFd err_r(err_p[0]), err_w(err_p[1]);

    auto deadline = Clock::now() + timeout;
    auto started = start_child(argv, netns_path, out_w.get(), err_w.get());
    if (!started) return started.error();
    out_w.reset();
    err_w.reset();
    ::fcntl(out_r.get(), F_SETFL, O_NONBLOCK);
    ::fcntl(err_r.get(), F_SETFL, O_NONBLOCK);
    const pid_t pid = started->pid;
    const int pidfd = started->pidfd.get();

    CommandResult res;
    bool out_open = true, err_open = true, exited = false, timed_out = false;
    Clock::time_point drain_until{};
    while (out_open || err_open || !exited) {
        auto now = Clock::now();
        if (now >= deadline) {
            timed_out = !exited;
            break;
        }
        if (exited && now >= drain_until) break;  // descendants keep the pipes open: stop collecting
        auto until = exited ? std::min(deadline, drain_until) : deadline;
        pollfd fds[3];
        nfds_t n = 0;
        int out_i = -1, err_i = -1, pid_i = -1;
        if (out_open) fds[out_i = static_cast<int>(n++)] = pollfd{out_r.get(), POLLIN, 0};
        if (err_open) fds[err_i = static_cast<int>(n++)] = pollfd{err_r.get(), POLLIN, 0};
        if (!exited) fds[pid_i = static_cast<int>(n++)] = pollfd{pidfd, POLLIN, 0};
        auto left = std::chrono::duration_cast<milliseconds>(until - now).count();
        int r = ::poll(fds, n, static_cast<int>(std::max<long>(left, 1)));
        if (r < 0 && errno != EINTR) {
            timed_out = !exited;  // cannot wait any more: treat like a timeout so the child is killed
            break;
        }
        if (r <= 0) continue;
        if (out_i >= 0 && fds[out_i].revents) read_available(out_r.get(), res.out, out_open);
        if (err_i >= 0 && fds[err_i].revents) read_available(err_r.get(), res.err, err_open);
        if (pid_i >= 0 && fds[pid_i].revents) {
            exited = true;
            drain_until = Clock::now() + kOutputGrace;
        }
    }

    if (timed_out) {
        kill_group_and_child(pid, pidfd, SIGKILL);
        if (poll_exit(pidfd, kKillGrace)) reap_blocking(pid);
        if (out_open) read_available(out_r.get(), res.out, out_open);
        if (err_open) read_available(err_r.get(), res.err, err_open);
        std::string where = netns_path.empty() ? "" : " (in " + netns_path + ")";
        return Error{ETIMEDOUT, format_argv(argv) + where + " timed out after " + std::to_string(timeout.count()) +
                                    " ms and was killed; stdout: [" + res.out + "] stderr: [" + res.err + "]"};
    }
    res.exit_code = reap_blocking(pid);
    return res;
}

// ---- spawn / Process -----------------------------------------------------------------------

Result<Process> spawn(const std::vector<std::string>& argv, const std::string& netns_path) {
    UniqueFd out(::memfd_create("kxlb-lab-output", MFD_CLOEXEC));
    if (!out.valid()) return Error::from_errno(errno, "memfd_create");
    auto started = start_child(argv, netns_path, out.get(), out.get());
    if (!started) return started.error();
    return Process(started->pid, std::move(started->pidfd), std::move(out));
}

Process::Process(Process&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)),
      pidfd_(std::move(o.pidfd_)),
      out_(std::move(o.out_)),
      reaped_(std::exchange(o.reaped_, false)),
      exit_code_(std::exchange(o.exit_code_, -1)) {}

Process& Process::operator=(Process&& o) noexcept {
    if (this != &o) {
        terminate();
        pid_ = std::exchange(o.pid_, -1);
        pidfd_ = std::move(o.pidfd_);
        out_ = std::move(o.out_);
        reaped_ = std::exchange(o.reaped_, false);
        exit_code_ = std::exchange(o.exit_code_, -1);
    }
    return *this;
}

Process::~Process() { terminate(); }

void Process::terminate() noexcept {
    if (pid_ < 0 || reaped_) return;
    kill_group_and_child(pid_, pidfd_.get(), SIGTERM);
    if (!wait_exited(kTermGrace)) {
        kill_group_and_child(pid_, pidfd_.get(), SIGKILL);
        if (!wait_exited(kKillGrace)) return;  // unkillable (D state): leave the zombie rather than hang
    }
    ::kill(-pid_, SIGKILL);  // descendants still in the group; the unreaped child pins the pgid
    reap();
}

bool Process::wait_exited(std::chrono::milliseconds timeout) const { return poll_exit(pidfd_.get(), timeout); }

void Process::reap() {
    if (reaped_) return;
    exit_code_ = reap_blocking(pid_);
    reaped_ = true;
}

bool Process::running() {
    if (pid_ < 0 || reaped_) return false;
    int status = 0;
    pid_t r;
    do r = ::waitpid(pid_, &status, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0) return true;
    reaped_ = true;
    exit_code_ = r == pid_ ? to_exit_code(status) : -1;
    return false;
}

Result<int> Process::wait(std::chrono::milliseconds timeout) {
    if (pid_ < 0) return Error::invalid("wait: no process");
    if (reaped_) return exit_code_;
    if (!wait_exited(timeout))
        return Error{ETIMEDOUT, "process " + std::to_string(pid_) + " still running after " +
                                    std::to_string(timeout.count()) + " ms"};
    reap();
    return exit_code_;
}

void Process::kill(int sig) {
    if (pid_ < 0 || reaped_) return;
    kill_group_and_child(pid_, pidfd_.get(), sig);
}

std::string Process::output() const {
    std::string s;
    if (!out_.valid()) return s;
    struct stat st {};
    if (::fstat(out_.get(), &st) != 0 || st.st_size <= 0) return s;
    s.resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < s.size()) {
        ssize_t n = ::pread(out_.get(), s.data() + got, s.size() - got, static_cast<off_t>(got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += static_cast<size_t>(n);
    }
    s.resize(got);
    return s;
}

}  // namespace kxlb::lab
