#include "live_set.hpp"

#include <charconv>
#include <chrono>

namespace micromodels::detail {

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string LiveMember::text() const {
  return stage + "|" + process + "|" + version + "|" + std::to_string(consumers);
}

std::vector<LiveMember> live_members(Connection& conn, const StreamNames& names) {
  const Reply reply = conn.command(
      {"ZRANGEBYSCORE", names.live(), std::to_string(wall_ms()), "+inf", "WITHSCORES"});
  std::vector<LiveMember> members;
  for (std::size_t i = 0; i + 1 < size(reply.get()); i += 2) {
    const std::string_view member = detail::text(at(reply.get(), i));
    const auto a = member.find('|');
    const auto b = member.find('|', a == std::string_view::npos ? a : a + 1);
    const auto c = member.rfind('|');
    if (a == std::string_view::npos || b == std::string_view::npos || c <= b) continue;  // not ours
    LiveMember& m =
        members.emplace_back(LiveMember{.stage = std::string(member.substr(0, a)),
                                        .process = std::string(member.substr(a + 1, b - a - 1)),
                                        .version = std::string(member.substr(b + 1, c - b - 1))});
    std::from_chars(member.data() + c + 1, member.data() + member.size(), m.consumers);
    const std::string_view score = detail::text(at(reply.get(), i + 1));
    std::from_chars(score.data(), score.data() + score.size(), m.expiry_ms);
  }
  return members;
}

std::map<std::string, std::set<std::string>> live_processes(Connection& conn,
                                                            const StreamNames& names,
                                                            std::string_view version) {
  std::map<std::string, std::set<std::string>> processes;
  for (const LiveMember& m : live_members(conn, names)) {
    if (m.version == version) processes[m.stage].insert(m.process);
  }
  return processes;
}

}  // namespace micromodels::detail
