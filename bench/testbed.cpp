#include "testbed.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <fcntl.h>
#include <sched.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace micromodels::bench {

namespace {

constexpr const char* kPrefix = "mmscale";
constexpr const char* kRate = "1gbit";
constexpr double kDelayMs = 0.5;  // each way: netem adds half of it at each end of a link

std::string joined(const std::vector<std::string>& args) {
  std::string text;
  for (const std::string& a : args) text += (text.empty() ? "" : " ") + a;
  return text;
}

// Runs `args` and returns what it printed (stdout and stderr). Throws std::runtime_error with
// the command, its exit code and its output when it fails.
std::string run_tool(const std::vector<std::string>& args) {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) throw std::runtime_error("cannot make a pipe for " + args[0]);
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (std::string& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
  pid_t pid = -1;
  const int error = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[1]);
  if (error != 0) {
    ::close(pipe_fds[0]);
    throw std::runtime_error("cannot run '" + args[0] + "' (" + std::strerror(error) +
                             "): install it (Debian package iproute2 for ip and tc)");
  }
  std::string output;
  char buffer[4096];
  for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof buffer)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    output.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(pipe_fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error("'" + joined(args) + "' failed (" +
                             (WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                                : "signal " + std::to_string(WTERMSIG(status))) +
                             "): " + output);
  }
  return output;
}

// Kills every process in namespace `ns` (`ip netns pids`) and deletes it.
void delete_namespace(const std::string& ns) noexcept {
  try {
    std::istringstream pids(run_tool({"ip", "netns", "pids", ns}));
    for (pid_t pid = 0; pids >> pid;) ::kill(pid, SIGKILL);
    run_tool({"ip", "netns", "delete", ns});
  } catch (const std::exception& error) {
    std::cerr << "bench scaleout: could not remove network namespace " << ns << ": " << error.what()
              << " (remove it with: ip netns delete " << ns << ")\n";
  }
}

}  // namespace

Testbed::Testbed(std::vector<std::string> hosts, bool isolated)
    : hosts_(std::move(hosts)),
      isolated_(isolated),
      prefix_(std::string(kPrefix) + std::to_string(::getpid()) + "-"),
      link_("loopback") {
  if (!isolated_) return;
  if (::geteuid() != 0) {
    throw std::runtime_error("network namespaces need root (this process runs as uid " +
                             std::to_string(::geteuid()) +
                             "): run it as root, or pass --no-netns for plain loopback");
  }
  try {
    set_up();
  } catch (...) {
    tear_down();
    throw;
  }
}

Testbed::~Testbed() {
  if (isolated_) tear_down();
}

void Testbed::set_up() {
  const std::string sw = ns("sw");
  run_tool({"ip", "netns", "add", sw});
  run_tool({"ip", "-n", sw, "link", "add", "br0", "type", "bridge"});
  run_tool({"ip", "-n", sw, "link", "set", "br0", "up"});
  // netem where the kernel has it (rate and delay), else tbf (rate only).
  std::ostringstream half_delay;
  half_delay << kDelayMs / 2 << "ms";
  bool netem = true;
  const auto shape = [&](const std::string& where, const std::string& dev) {
    if (netem) {
      try {
        run_tool({"tc", "-n", where, "qdisc", "add", "dev", dev, "root", "netem", "delay",
                  half_delay.str(), "rate", kRate});
        return;
      } catch (const std::runtime_error& error) {
        if (std::string(error.what()).find("unknown") == std::string::npos) throw;
        netem = false;  // "Specified qdisc kind is unknown": this kernel has no sch_netem
      }
    }
    run_tool({"tc", "-n", where, "qdisc", "add", "dev", dev, "root", "tbf", "rate", kRate, "burst",
              "1mb", "latency", "10ms"});
  };
  for (std::size_t i = 0; i < hosts_.size(); ++i) {
    const std::string& host = hosts_[i];
    const std::string name = ns(host);
    run_tool({"ip", "netns", "add", name});
    run_tool({"ip", "-n", sw, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns",
              name});
    run_tool({"ip", "-n", sw, "link", "set", host, "master", "br0"});
    run_tool({"ip", "-n", sw, "link", "set", host, "up"});
    run_tool({"ip", "-n", name, "addr", "add", address(host) + "/24", "dev", "eth0"});
    run_tool({"ip", "-n", name, "link", "set", "eth0", "up"});
    run_tool({"ip", "-n", name, "link", "set", "lo", "up"});
    shape(name, "eth0");
    shape(sw, host);
  }
  std::ostringstream link;
  link << "veth links through a bridge, " << kRate << " each way, ";
  if (netem) {
    link << kDelayMs << " ms each way (netem)";
  } else {
    link << "no added delay (tbf: this kernel has no netem)";
  }
  link_ = link.str();
}

void Testbed::tear_down() noexcept {
  std::vector<std::string> ours;
  try {
    ours = namespaces(prefix_);
  } catch (const std::exception& error) {
    std::cerr << "bench scaleout: cannot list network namespaces: " << error.what() << '\n';
  }
  // The hosts first: their processes go with them, then the switch.
  std::sort(ours.begin(), ours.end(), [&](const std::string& a, const std::string& b) {
    return (a == ns("sw")) < (b == ns("sw"));
  });
  for (const std::string& name : ours) delete_namespace(name);
}

std::string Testbed::address(const std::string& host) const {
  if (!isolated_) return "127.0.0.1";
  const auto at = std::find(hosts_.begin(), hosts_.end(), host);
  if (at == hosts_.end()) throw std::logic_error("testbed: no host " + host);
  return "10.200.0." + std::to_string(at - hosts_.begin() + 1);
}

std::vector<std::string> Testbed::command(const std::string& host,
                                          std::vector<std::string> args) const {
  if (!isolated_) return args;
  std::vector<std::string> full = {"ip", "netns", "exec", ns(host)};
  full.insert(full.end(), args.begin(), args.end());
  return full;
}

void Testbed::in(const std::string& host, const std::function<void()>& work) const {
  if (!isolated_) {
    work();
    return;
  }
  std::exception_ptr failure;
  std::thread thread([&] {
    try {
      const std::string path = "/run/netns/" + ns(host);
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
        if (fd >= 0) ::close(fd);
        throw std::runtime_error("cannot enter network namespace " + path + ": " +
                                 std::strerror(errno));
      }
      ::close(fd);
      work();
    } catch (...) {
      failure = std::current_exception();
    }
  });
  thread.join();
  if (failure) std::rethrow_exception(failure);
}

std::vector<std::string> Testbed::namespaces(const std::string& prefix) {
  std::istringstream lines(run_tool({"ip", "netns", "list"}));
  std::vector<std::string> found;
  for (std::string line; std::getline(lines, line);) {
    const std::string name = line.substr(0, line.find(' '));  // "NAME (id: 3)"
    if (name.starts_with(prefix)) found.push_back(name);
  }
  return found;
}

void Testbed::remove_leftovers() {
  for (const std::string& name : namespaces(kPrefix)) {
    const std::string digits = name.substr(std::string(kPrefix).size());
    const pid_t pid = static_cast<pid_t>(std::atoi(digits.c_str()));
    if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH) delete_namespace(name);
  }
}

}  // namespace micromodels::bench
