// The `micromodels` tool started in the background by a test, as a user would start it: its
// stdout and stderr go to files the test reads while it runs and after it ended.
#pragma once

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace micromodels::testing {

/// An empty folder for the running test, named PREFIX_PID_TEST under the temp directory.
inline std::filesystem::path fresh_test_dir(const std::string& prefix) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() /
      (prefix + "_" + std::to_string(::getpid()) + "_" + info->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

struct ToolResult {
  int exit_code = -1;  // 128 + signal when killed by a signal, as a shell reports it
  std::string out;
  std::string err;
};

/// `micromodels ARGS...` (MICROMODELS_CLI_PATH) running in the background with stdin from
/// /dev/null and stdout/stderr in `dir`/`name`.out and .err. `env` adds to or replaces variables
/// of this process's environment; a value of nullopt removes one. Killed by the destructor.
class ToolProcess {
 public:
  /// `terminal`: a pseudo-terminal's slave side to use as stdin, stdout and stderr instead.
  ToolProcess(const std::filesystem::path& dir, const std::string& name,
              std::vector<std::string> args,
              const std::map<std::string, std::optional<std::string>>& env = {}, int terminal = -1)
      : out_(dir / (name + ".out")), err_(dir / (name + ".err")) {
    args.insert(args.begin(), MICROMODELS_CLI_PATH);
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);

    std::vector<std::string> variables;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string variable = *e;
      const std::string key = variable.substr(0, variable.find('='));
      if (env.count(key) == 0) variables.push_back(variable);
    }
    for (const auto& [key, value] : env) {
      if (value) variables.push_back(key + "=" + *value);
    }
    std::vector<char*> envp;
    for (std::string& variable : variables) envp.push_back(variable.data());
    envp.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (terminal >= 0) {
      for (const int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) {
        posix_spawn_file_actions_adddup2(&actions, terminal, fd);
      }
    } else {
      posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
      posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_.c_str(),
                                       O_WRONLY | O_CREAT | O_TRUNC, 0644);
      posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_.c_str(),
                                       O_WRONLY | O_CREAT | O_TRUNC, 0644);
    }
    const int error = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (error != 0) throw std::runtime_error(std::string("cannot start ") + argv[0]);
  }

  ~ToolProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  ToolProcess(const ToolProcess&) = delete;
  ToolProcess& operator=(const ToolProcess&) = delete;

  void signal(int number) const { ::kill(pid_, number); }
  [[nodiscard]] std::string err_so_far() const { return read_text(err_); }

  /// Waits for a line of stderr matching `pattern` (its first group); empty after `timeout`.
  [[nodiscard]] std::string wait_for_stderr(const std::regex& pattern,
                                            std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::smatch match;
    while (std::chrono::steady_clock::now() < deadline) {
      const std::string err = read_text(err_);
      if (std::regex_search(err, match, pattern)) return match[1];
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // exited without printing it
        pid_ = -1;
        reaped_status_ = status;
        return {};
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return {};
  }

  /// Waits for the exit; kills the tool and fails the test after `timeout`.
  ToolResult wait(std::chrono::milliseconds timeout) {
    ToolResult result;
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    if (pid_ > 0) {
      while (::waitpid(pid_, &status, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > deadline) {
          ADD_FAILURE() << "the tool did not exit within " << timeout.count() << " ms";
          ::kill(pid_, SIGKILL);
          ::waitpid(pid_, &status, 0);
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      reaped_status_ = status;
    }
    if (reaped_status_) {
      result.exit_code = WIFEXITED(*reaped_status_) ? WEXITSTATUS(*reaped_status_)
                                                    : 128 + WTERMSIG(*reaped_status_);
    }
    pid_ = -1;
    result.out = read_text(out_);
    result.err = read_text(err_);
    return result;
  }

 private:
  std::filesystem::path out_;
  std::filesystem::path err_;
  mutable pid_t pid_ = -1;
  mutable std::optional<int> reaped_status_;
};

}  // namespace micromodels::testing
