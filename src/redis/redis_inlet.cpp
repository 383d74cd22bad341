// RedisInlet: the three ways a stage reads its stream(s) (redis_inlet.hpp), in Redis commands.
// What was delivered, settled and may be acknowledged is kept by the DeliveryLedger
// (src/wire/delivery_ledger.hpp). About 600 lines in one file: the shared, partitioned and sink
// modes share one path for accepting an entry, and the leases' take-over and give-up change it.
#include "redis_inlet.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <span>
#include <thread>

#include "micromodels/packet_codec.hpp"

#include "redis_outlet.hpp"
#include "wire/entry.hpp"
#include "wire/retired_keys.hpp"

namespace micromodels::detail {

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kMostRead = 256;  // entries per read
constexpr int kBlockMs = 100;           // longest wait for entries: how soon a stop is noticed
constexpr int kIdleBlockMs = 500;       // the same once a read has found nothing for a second
constexpr int kIdleReads = 10;          // ... that is after this many empty reads in a row

// Leases of one stage's partitions (one slot). KEYS: the leases asked for. ARGV: consumer, time to
// live (ms), how many to take at most. Each is taken when free, or kept when ours already (after
// a reconnect); returns 1 for each that is ours, else 0.
constexpr const char* kAcquire =
    "local got, n = {}, tonumber(ARGV[3]) "
    "for i, key in ipairs(KEYS) do "
    "  local v = redis.call('GET', key) "
    "  got[i] = 0 "
    "  if n > 0 and (v == ARGV[1] or not v) then "
    "    redis.call('SET', key, ARGV[1], 'PX', ARGV[2]) got[i] = 1 n = n - 1 "
    "  end "
    "end "
    "return got";
// The progress of a leased partition (its acknowledgements and next seq per stream) is recorded
// only while the lease is still ours, in one step. A former owner that has not noticed yet that
// its lease expired then changes nothing: what it processed stays pending, the new owner claims
// and runs it again (downstream drops the duplicates), and the next seqs the new owner read
// when it took over stay true. The acknowledgement comes first: a Redis at its maxmemory refuses
// a script's first write when that one makes it grow (HSET), not the writes after it, so the
// commit is never refused halfway. KEYS: lease, next-seq hash, stream. ARGV: consumer, group,
// n, n x (stream, next), ids to acknowledge...
constexpr const char* kCommitIfLeased =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
    "local n = tonumber(ARGV[3]) "
    "if #ARGV > 3 + 2 * n then redis.call('XACK', KEYS[3], ARGV[2], unpack(ARGV, 4 + 2 * n)) end "
    "for i = 0, n - 1 do redis.call('HSET', KEYS[2], ARGV[4 + 2 * i], ARGV[5 + 2 * i]) end "
    "return 1";
// KEYS[1]: the lease. ARGV: consumer, a command on the lease and its arguments: DEL hands it
// over at once. Done only while the lease is ours; returns the command's reply (1), or 0 when it
// is no longer ours.
constexpr const char* kIfOurs =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call(ARGV[2], KEYS[1], unpack(ARGV, 3)) else return 0 end";
// KEYS: leases of one stage (one slot). ARGV: consumer, time to live (ms). Each one still ours
// is renewed; returns 1 or 0 for each.
constexpr const char* kRenewIfOurs =
    "local kept = {} "
    "for i, key in ipairs(KEYS) do "
    "  if redis.call('GET', key) == ARGV[1] then redis.call('PEXPIRE', key, ARGV[2]) kept[i] = 1 "
    "  else kept[i] = 0 end "
    "end "
    "return kept";

Delivery control(Delivery::Kind kind, std::uint32_t stream, std::uint64_t seq, std::size_t input,
                 Ticket ticket) {
  Delivery d{.kind = kind, .input = input, .ticket = ticket};
  d.packet.stream = stream;
  d.packet.seq = seq;
  return d;
}

// A delivery that goes on as a skip of its (stream, seq), the packet left behind.
void skip_instead(Delivery& d, Delivery::Loss loss) {
  d.kind = Delivery::Kind::skip;
  d.loss = loss;
  d.packet = Packet{.stream = d.packet.stream, .seq = d.packet.seq};
}

// A letter the inlet writes (the engine logs the failures of stages): logged, as an error.
void letter_of_inlet(Session& session, const DeadLetter& letter) {
  log().error("stage '{}': {}{}: dead-lettered to {}", letter.stage, letter.error,
              letter.position ? " (stream " + std::to_string(letter.position->first) + " seq " +
                                    std::to_string(letter.position->second) + ")"
                              : std::string(),
              session.names->dead_letter());
  write_dead_letter(session, letter);
}

}  // namespace

RedisInlet::RedisInlet(Session& session, const PlanStage& stage)
    : session_(session),
      stage_(stage),
      mode_(stage.sink()      ? Mode::sink
            : stage.gathers() ? Mode::partitioned
                              : Mode::shared),
      settles_frames_(mode_ == Mode::sink && !stage.dead_letter),
      holds_keys_(mode_ != Mode::sink && session.image_refs && session.image_store->retires()),
      inputs_(std::max<std::size_t>(1, stage.inputs.size())),
      group_(stage.name()),
      consumer_(session.consumer + ":" + stage.name()),
      keys_(session.keys(stage)),
      ledger_(mode_, keys_.size(), inputs_, mode_ != Mode::shared && !stage.dead_letter) {
  std::lock_guard lock(session_.parts_mutex);
  session_.inlets.push_back(this);
}

RedisInlet::~RedisInlet() {
  std::lock_guard lock(session_.parts_mutex);
  std::erase(session_.inlets, this);
}

void RedisInlet::create_groups(Connection& conn) {
  std::vector<std::pair<std::string, std::string>> groups;
  for (const std::string& key : keys_) groups.emplace_back(key, group_);
  detail::create_groups(conn, std::move(groups));
}

bool RedisInlet::take(std::vector<Delivery>& out, std::size_t max) {
  const std::size_t first = out.size();
  const bool more = read(out, max);
  fetch_images(out, first);
  return more;
}

bool RedisInlet::reads(const std::string& field) const {
  const StageInfo& info = stage_.info;
  return info.reads_all ||
         std::find(info.reads.begin(), info.reads.end(), field) != info.reads.end() ||
         std::find(info.optional_reads.begin(), info.optional_reads.end(), field) !=
             info.optional_reads.end();
}

// The images that came by reference and that this stage reads: fetched once for the batch
// (the cache, then pipelined GETs), and put in place. A packet whose image is gone (expired,
// deleted) or not what its reference says fails here: dead-lettered, a skip in its place.
// Images the stage does not read stay references: they go on without being fetched. The keys a
// packet arrived with, referred to or retired (retired_keys.hpp), go with it: a sink's into its
// frame's keys, another stage's into the packet, for the outlets after it.
void RedisInlet::fetch_images(std::vector<Delivery>& out, std::size_t first) {
  std::vector<ImageRef> refs;  // of the whole batch
  std::vector<std::vector<std::pair<std::string, ImageRef>>> read_here(out.size() - first);
  for (std::size_t i = first; i < out.size(); ++i) {
    if (out[i].kind != Delivery::Kind::packet) continue;
    try {
      std::vector<std::string> referred;
      for (auto& [name, ref] : references(out[i].packet)) {
        if (settles_frames_) ledger_.keep_key(out[i].ticket, ref.key);
        if (holds_keys_) referred.push_back(ref.key);
        if (!reads(name)) continue;
        refs.push_back(ref);
        read_here[i - first].emplace_back(std::move(name), std::move(ref));
      }
      if (mode_ == Mode::sink) {
        for (const std::string& key : take_retired(out[i].packet)) {
          if (settles_frames_) ledger_.keep_key(out[i].ticket, key);
        }
      } else if (holds_keys_) {
        hold_keys(out[i].packet, out[i].input, referred);
        hold(out[i], held_keys(out[i].packet));
      }
    } catch (const CodecError& error) {
      fail_delivery(out[i], "corrupt packet: " + std::string(error.what()));
    }
  }
  std::optional<std::map<std::string, ImageStore::Fetched>> fetched;
  while (!refs.empty() && !fetched) {
    const auto fetch = [&](Connection& redis, bool) {
      fetched = session_.image_store->fetch(redis, refs);
    };
    if (!session_.attempt(images_conn_, consumer_, fetch)) {
      out.resize(first);  // the run stops: these entries stay pending in Redis, for another process
      return;
    }
  }
  for (std::size_t i = first; fetched && i < out.size(); ++i) {
    for (auto& [name, ref] : read_here[i - first]) {
      ImageStore::Fetched& image = fetched->at(ref.key);
      if (const auto* why = std::get_if<std::string>(&image)) {
        if (taken_by_another(out[i])) {
          // This process stopped (a pause, a cut) long enough for another to take the entry
          // over and finish it, after which the sinks let its images go: no loss. A plain skip,
          // which the sinks drop as a duplicate; no dead letter blames the images' TTL.
          log().info(
              "stage '{}': stream {} seq {} was taken over and finished by another "
              "process while this one was held up; skipped here",
              stage_.name(), out[i].packet.stream, out[i].packet.seq);
          skip_instead(out[i], Delivery::Loss::none);
        } else {
          fail_delivery(out[i], "image '" + name + "': " + *why);
        }
        break;
      }
      resolve(out[i].packet, name, std::get<Image>(image));
    }
  }
}

// Whether the entry of delivery `d` has passed to another process: the lease of its partition,
// or (shared) the entry itself, is no longer this process's. Asked only when its image is gone.
bool RedisInlet::taken_by_another(const Delivery& d) {
  if (mode_ == Mode::sink || !images_conn_) return false;  // a sink's entries are the run's
  try {
    if (mode_ == Mode::partitioned) {
      const std::string& key = keys_[d.packet.stream % keys_.size()];
      return text(images_conn_->command({"GET", session_.names->lease(key)}).get()) != consumer_;
    }
    const std::string id = ledger_.id_of(d.ticket);
    if (id.empty()) return false;
    const Reply pending = images_conn_->command({"XPENDING", keys_[0], group_, id, id, "1"});
    return size(pending.get()) == 0 || text(at(at(pending.get(), 0), 1)) != consumer_;
  } catch (const BrokerError&) {
    return false;  // not known: dead-lettered, as before
  }
}

// A packet that fails on its way in (after accept): dead-lettered with its decoded bytes.
void RedisInlet::fail_delivery(Delivery& d, const std::string& error) {
  const std::vector<std::byte> bytes = encode_packet(d.packet);
  dead_letter(d, ledger_.id_of(d.ticket), error, 1,
              {reinterpret_cast<const char*>(bytes.data()), bytes.size()});
}

// A delivery that cannot reach the stage goes to the dead-letter stream, and becomes a skip
// that goes on in its place (its settle acknowledges the entry).
void RedisInlet::dead_letter(Delivery& d, const std::string& id, const std::string& error,
                             std::int64_t deliveries, std::string_view payload) {
  letter_of_inlet(session_, {.stage = stage_.name(),
                             .error = error,
                             .entry_id = id,
                             .deliveries = deliveries,
                             .position = std::make_pair(d.packet.stream, d.packet.seq),
                             .payload = payload});
  skip_instead(d, Delivery::Loss::dead_lettered);
}

bool RedisInlet::read(std::vector<Delivery>& out, std::size_t max) {
  if (session_.stopping()) return false;
  // A run began since this inlet last looked (another part of this process met its first
  // entry): what it held does not apply, the leases least of all, which the run's start deleted.
  // Noticed here rather than at this stage's own first entry, which may come much later: read
  // under the old leases, the new run's entries would be taken again when the keeper finds them
  // gone, and run twice.
  if (const std::uint64_t current = session_.run(); current != 0 && current != run_) {
    new_run(out);
  }
  return session_.attempt(conn_, consumer_, [&](Connection& conn, bool fresh) {
    if (fresh) {
      create_groups(conn);
      // After a lost connection: leases are taken again (with what they hold); a sink claims
      // back what Redis delivered in a reply that never arrived (pending on it, never seen).
      if (std::exchange(connected_, true)) {
        give_up_all(out, false);
        if (mode_ == Mode::sink) claim_pending(0, out);
      }
    }
    const auto now = Clock::now();
    if (now >= next_upkeep_) {
      next_upkeep_ = now + std::chrono::milliseconds(kLeaseMs / 3);
      if (paused_) {
        // Paused on another version's entries, this inlet reads none, so it would never meet
        // the first entry of a run of its own: it reads the run record instead, and a new run
        // starts on the next call (new_run, above).
        session_.is_current_run(conn, 0);
        if (session_.run() != run_) return;
        if (session_.run_version() == session_.version) paused_ = false;
      }
      if (!paused_ && mode_ == Mode::partitioned) lease_round(out);
      // The run process alone reads a sink: what another consumer holds there, an older run's
      // process read before it noticed this run.
      if (mode_ == Mode::sink && !paused_) claim_strays({0}, out);
    }
    if (paused_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(kBlockMs));
      return;
    }
    if (mode_ == Mode::shared && now >= next_reclaim_) {
      next_reclaim_ = now + std::chrono::milliseconds(static_cast<int>(
                                std::max(10.0, session_.options.reclaim_idle_ms / 2)));
      // Entries of dead consumers: pending for longer than the reclaim time. Entries being
      // worked on do not look idle (the keeper refreshes them), so only a dead or stuck
      // process's go.
      const auto idle = static_cast<long long>(session_.options.reclaim_idle_ms);
      cursor_ = claim(0, std::to_string(idle), cursor_, std::clamp<std::size_t>(max, 1, kMostRead),
                      true, out);
    }
    flush_acks();
    if (!out.empty() || max == 0) return;

    // An idle stage asks less often (an idle worker's round trips are mostly these reads); an
    // entry ends the wait at once either way.
    const int block = empty_reads_ >= kIdleReads ? kIdleBlockMs : kBlockMs;
    Args read{"XREADGROUP", "GROUP",
              group_,       consumer_,
              "COUNT",      std::to_string(std::min(max, kMostRead)),
              "BLOCK",      std::to_string(block),
              "STREAMS"};
    const std::vector<std::size_t> reading = ledger_.readable();
    for (std::size_t k : reading) read.add(keys_[k]);
    if (reading.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(kBlockMs));
      return;
    }
    for (std::size_t i = 0; i < reading.size(); ++i) read.add(">");
    const Reply reply = conn.command(read);
    if (is_error(reply.get())) {
      // A run reset the streams (NOGROUP), or a stop woke the read (UNBLOCKED).
      if (!text(reply.get()).starts_with("NOGROUP") &&
          !text(reply.get()).starts_with("UNBLOCKED")) {
        throw std::runtime_error("XREADGROUP: " + std::string(text(reply.get())));
      }
      create_groups(conn);
      return;
    }
    empty_reads_ = size(reply.get()) == 0 ? empty_reads_ + 1 : 0;
    for (std::size_t s = 0; s < size(reply.get()); ++s) {
      const redisReply* stream = at(reply.get(), s);
      const std::string_view key = text(at(stream, 0));
      for (std::size_t k : reading) {
        if (keys_[k] != key) continue;
        if (!accept_all(at(stream, 1), k, out)) return;
      }
    }
  });
}

// One entry read from partition `part`: a delivery for the engine, or handled here (an older
// run's entry, a duplicate, one that is not ours). False when the rest of the read must wait:
// the first entry of a new run, whose leased partitions are taken over afresh.
bool RedisInlet::accept(const redisReply* item, std::size_t part, std::int64_t deliveries,
                        std::vector<Delivery>& out) {
  const std::string id(text(at(item, 0)));
  const redisReply* fields = at(item, 1);
  // An entry whose (stream, seq) is not known: dead-lettered and acknowledged, no skip for it.
  const auto unreadable = [&](const std::string& error, std::string_view payload) {
    letter_of_inlet(session_, {.stage = stage_.name(),
                               .error = error,
                               .entry_id = id,
                               .deliveries = deliveries,
                               .payload = payload});
    ledger_.ack(part, id);
    return true;
  };
  if (fields == nullptr || size(fields) == 0) {  // deleted meanwhile (trimmed): nothing to do
    ledger_.ack(part, id);
    return true;
  }
  const redisReply* value = field(fields, kEntryField);
  if (value == nullptr) {
    return unreadable(
        "entry " + id +
            (field(fields, "k") != nullptr ? " was written by an older micromodels (entry format 1)"
                                           : " is not a micromodels entry (no field 'm')"),
        {});
  }
  Entry entry;
  try {
    entry = decode_entry(text(value));
  } catch (const EntryError& error) {
    return unreadable("entry " + id + ": " + error.what(), text(value));
  }
  if (entry.run != run_) {
    // The run process meets a newer run's entry when that run reset the queues: this run ends,
    // and the entry (pending here) goes to that run's sink (claim_strays).
    if (session_.is_run() && !session_.holds_run(*conn_)) return false;
    if (!session_.is_current_run(*conn_, entry.run)) {  // an older run's entry
      ledger_.ack(part, id);
      return true;
    }
    new_run(out);
    if (mode_ == Mode::partitioned) return false;  // taken over again, with this entry
  }
  if (entry.version != session_.version) {
    refuse(id, part, entry.version);
    return true;
  }
  // Not delivered: the same entry on its way already (reclaimed), or a duplicate. The
  // dead-letter stage takes every entry, at least once: failures of one (stream, seq) in two
  // stages, or several refused packets of one input, are each a dead letter of their own.
  if (ledger_.admit(part, id, entry.stream, entry.input, entry.seq) !=
      DeliveryLedger::Admit::deliver) {
    return true;
  }
  Delivery d{
      .kind = entry.kind == Entry::Kind::packet ? Delivery::Kind::packet : Delivery::Kind::skip,
      .input = entry.input < inputs_ ? entry.input : 0u,  // unless that is what is wrong
      .ticket = ledger_.hold(part, entry.stream, entry.seq, id),
      .loss =
          entry.kind == Entry::Kind::unserved ? Delivery::Loss::unserved : Delivery::Loss::none};
  std::string error;
  std::string_view payload = entry.payload;
  if (entry.input >= inputs_) {
    error = "entry " + id + " names input " + std::to_string(entry.input) + " of stage '" +
            stage_.name() + "', which has " + std::to_string(stage_.inputs.size());
    payload = text(value);
  } else if (deliveries > session_.options.max_deliveries) {
    error = "delivered " + std::to_string(deliveries) +
            " times without success (the processes "
            "that took it died or were killed)";
  } else if (d.kind == Delivery::Kind::packet) {
    try {
      d.packet = decode_hop(entry.payload);
    } catch (const CodecError& e) {
      error = "corrupt packet: " + std::string(e.what());
      payload = {};
    }
  }
  d.packet.stream = entry.stream;
  d.packet.seq = entry.seq;
  if (!error.empty()) {
    dead_letter(d, id, error, deliveries, payload);
  } else if (d.kind == Delivery::Kind::skip) {
    skip_keys(d, entry.payload);
  }
  out.push_back(std::move(d));
  return true;
}

// The keys a skip brought (the packet it stands for held them): a sink keeps them for its frame,
// another stage for the skips it passes on. A list that does not decode leaves them to their TTL.
void RedisInlet::skip_keys(Delivery& d, std::string_view payload) {
  if (payload.empty() || (mode_ == Mode::sink ? !settles_frames_ : !holds_keys_)) return;
  std::vector<std::string> keys;
  try {
    keys = decode_keys(std::as_bytes(std::span(payload)));
  } catch (const CodecError& error) {
    log().warn("stage '{}': the image keys of a skip ({} {}) go by their TTL: {}", stage_.name(),
               d.packet.stream, d.packet.seq, error.what());
    return;
  }
  if (mode_ != Mode::sink) return hold(d, {keys.begin(), keys.end()});
  for (std::string& key : keys) ledger_.keep_key(d.ticket, std::move(key));
}

void RedisInlet::hold(const Delivery& d, std::set<std::string> keys) {
  if (keys.empty()) return;
  std::lock_guard lock(held_mutex_);
  held_[{d.packet.stream, d.packet.seq}].merge(keys);
}

std::set<std::string> RedisInlet::keys_held(std::uint32_t stream, std::uint64_t seq) const {
  std::lock_guard lock(held_mutex_);
  const auto found = held_.find({stream, seq});
  return found == held_.end() ? std::set<std::string>{} : found->second;
}

bool RedisInlet::accept_all(const redisReply* entries, std::size_t part, std::vector<Delivery>& out,
                            const std::map<std::string, std::int64_t>& deliveries) {
  for (std::size_t i = 0; i < size(entries); ++i) {
    const auto found = deliveries.find(std::string(text(at(at(entries, i), 0))));
    const std::int64_t times = found == deliveries.end() ? 1 : found->second;
    if (!accept(at(entries, i), part, times, out)) return false;
  }
  return true;
}

void RedisInlet::settle(Ticket ticket) {
  if (settles_frames_) {
    return ledger_.settle(
        ticket, [this](std::uint32_t stream, std::uint64_t seq, std::vector<std::string> keys) {
          session_.image_store->settled(stream, seq, std::move(keys));
        });
  }
  if (!holds_keys_) return ledger_.settle(ticket);
  ledger_.settle(ticket, [this](std::uint32_t stream, std::uint64_t seq, std::vector<std::string>) {
    std::lock_guard lock(held_mutex_);
    held_.erase({stream, seq});
  });
}

Ticket RedisInlet::merge(Ticket kept, Ticket absorbed) { return ledger_.merge(kept, absorbed); }

// Entries stay on their way (kept fresh against reclaim) until their acknowledgement is in: it
// may wait in the writer, behind outputs Redis refused for memory. A leased partition's progress
// goes with its acknowledgements, recorded only while the lease is ours.
void RedisInlet::flush_acks() {
  ledger_.flush([this](std::size_t k, DeliveryLedger::Progress progress) {
    if (mode_ != Mode::partitioned) {
      Args ack{"XACK", keys_[k], group_};
      for (const std::string& id : progress.acks) ack.add(id);
      session_.writer.add(std::move(ack), [this, ids = std::move(progress.acks)](
                                              const redisReply*) { ledger_.acknowledged(ids); });
      return;
    }
    Args commit{"EVAL",
                kCommitIfLeased,
                "3",
                session_.names->lease(keys_[k]),
                session_.names->next_seq(keys_[k]),
                keys_[k],
                consumer_,
                group_};
    commit.add(static_cast<std::uint64_t>(progress.reached.size()));
    for (const auto& [stream, next] : progress.reached) commit.add(std::uint64_t{stream}).add(next);
    for (std::string& id : progress.acks) commit.add(std::move(id));
    session_.writer.add(std::move(commit));
  });
}

// An entry written by another version of the pipeline: it goes back, untouched, to the
// consumers that run that version, and this inlet reads nothing until the run changes.
void RedisInlet::refuse(const std::string& id, std::size_t part, std::uint64_t version) {
  const std::string& key = keys_[part];
  conn_->command({"XCLAIM", key, group_, group_ + ":refused", "0", id, "IDLE", "3600000",
                  "RETRYCOUNT", "0", "JUSTID"});
  if (!refused_logged_) {
    refused_logged_ = true;
    log().error(
        "stage '{}': refused entry {} of {}: written by pipeline version {}, this process runs "
        "version {} (its pipeline file differs: stages, types, inputs, ordering, partitions, or "
        "what decides drops: overflow, join timeouts, live). "
        "The entry goes back to the other consumers; start this process with the run's "
        "pipeline file",
        stage_.name(), id, key, version_text(version), version_text(session_.version));
  }
  std::vector<Delivery> none;  // nothing is delivered while paused
  if (!std::exchange(paused_, true)) give_up_all(none, true);
}

// Every partition of a partitioned stage (see give_up).
void RedisInlet::give_up_all(std::vector<Delivery>& out, bool release) {
  for (std::size_t k = 0; k < keys_.size() && mode_ == Mode::partitioned; ++k) {
    give_up(k, out, release);
  }
}

// Entries of partition k pending for `idle` ms or more become ours, from `cursor` on, at most
// `count` (XAUTOCLAIM); returns where the next claim goes on ("0-0": it went through them all).
// With `counted`, how often each was delivered: a packet that kills its consumers ends as a dead
// letter. Entries already on their way here are recognised by their id (accept).
std::string RedisInlet::claim(std::size_t k, const std::string& idle, const std::string& cursor,
                              std::size_t count, bool counted, std::vector<Delivery>& out) {
  const std::string& key = keys_[k];
  const Reply claimed = conn_->command(
      {"XAUTOCLAIM", key, group_, consumer_, idle, cursor, "COUNT", std::to_string(count)});
  if (is_error(claimed.get())) return "0-0";
  const redisReply* list = at(claimed.get(), 1);
  std::map<std::string, std::int64_t> deliveries;
  if (counted && size(list) > 0) {
    const Reply pending = conn_->command({"XPENDING", key, group_, text(at(at(list, 0), 0)),
                                          text(at(at(list, size(list) - 1), 0)),
                                          std::to_string(size(list) + 16), consumer_});
    for (std::size_t i = 0; i < size(pending.get()); ++i) {
      const redisReply* p = at(pending.get(), i);
      deliveries[std::string(text(at(p, 0)))] = integer(at(p, 3));
    }
    log().info("stage '{}': reclaimed {} entries idle for over {} ms", stage_.name(), size(list),
               idle);
  }
  accept_all(list, k, out, deliveries);
  return std::string(text(at(claimed.get(), 0)));
}

// Leases: let go of what was lost, take this process's share of the free partitions (a
// stopped process's at once, a dead one's once its lease expired), hand one back when others
// came to share, and claim what a former owner read of ours after its lease ran out.
void RedisInlet::lease_round(std::vector<Delivery>& out) {
  // A lease that went while this process went on may have gone with the last run: a run's start
  // deletes them, and this process learns of the run from its first entry, which a broker far
  // away delivers some round trips after the keeper found the leases gone. Not a loss, then.
  bool lost = false;
  for (std::size_t k = 0; k < keys_.size() && !lost; ++k) lost = ledger_.lost(k);
  if (lost && !session_.is_run()) {
    session_.is_current_run(*conn_, 0);  // reads the run record
    if (session_.run() != run_) {
      new_run(out);
      return;
    }
  }
  std::size_t owned = 0;
  for (std::size_t k = 0; k < keys_.size(); ++k) {
    if (ledger_.lost(k)) {
      log().warn("stage '{}': lost the lease on {}", stage_.name(), keys_[k]);
      session_.leases_lost.fetch_add(1, std::memory_order_relaxed);
      give_up(k, out, false);
    }
    if (ledger_.owned(k)) ++owned;
  }
  const auto share = (keys_.size() + static_cast<std::size_t>(std::max(1, processes.load())) - 1) /
                     static_cast<std::size_t>(std::max(1, processes.load()));
  // One round trip asks for this process's share of the free partitions.
  std::vector<std::size_t> free;
  for (std::size_t k = 0; k < keys_.size(); ++k) {
    if (!ledger_.owned(k)) free.push_back(k);
  }
  if (owned < share && !free.empty()) {
    Args acquire{"EVAL", kAcquire, std::to_string(free.size())};
    for (std::size_t k : free) acquire.add(session_.names->lease(keys_[k]));
    acquire.add(consumer_).add(std::to_string(kLeaseMs)).add(std::uint64_t{share - owned});
    const Reply got = conn_->command(acquire);
    std::vector<std::size_t> taken;
    for (std::size_t i = 0; i < free.size(); ++i) {
      if (integer(at(got.get(), i)) == 1) taken.push_back(free[i]);
    }
    take_over(taken, out);
    owned += taken.size();
  }
  if (owned > share && processes.load() > 1) {
    for (std::size_t k = keys_.size(); k-- > 0;) {
      if (!ledger_.owned(k)) continue;
      give_up(k, out, true);
      break;
    }
  }
  if (!paused_) claim_strays(ledger_.readable(), out);
  if (paused_) give_up_all(out, true);
}

// Partitions become ours: their progress from Redis, then every entry still pending in them (a
// previous owner's, or ours from before a reconnect); a round trip for each step, however many
// they are. A partition may hold another version's entries, which pause this inlet (refuse), or
// a new run's first entry (accept): the partitions after it are then not delivered from (the
// lease round gives them back, or takes them over again for the new run).
void RedisInlet::take_over(const std::vector<std::size_t>& parts, std::vector<Delivery>& out) {
  if (parts.empty()) return;
  // Our own earlier ownership of one (before a lost lease or a reconnect) may still have progress
  // in the writer, which is recorded once the lease is ours again: read the progress after it.
  session_.writer.drain();
  for (std::size_t k : parts) conn_->append({"HGETALL", session_.names->next_seq(keys_[k])});
  std::vector<bool> progressed;
  for (std::size_t k : parts) {
    const Reply reply = conn_->read("HGETALL");
    std::map<std::uint32_t, std::uint64_t> next;
    for (std::size_t i = 0; i + 1 < size(reply.get()); i += 2) {
      next.emplace(static_cast<std::uint32_t>(integer(at(reply.get(), i))),
                   static_cast<std::uint64_t>(integer(at(reply.get(), i + 1))));
    }
    ledger_.take_over(k, next);
    for (const auto& [stream, seq] : next) {
      out.push_back(control(Delivery::Kind::reset, stream, seq, 0, 0));
    }
    progressed.push_back(!next.empty());
  }
  for (std::size_t k : parts) {
    conn_->append({"XAUTOCLAIM", keys_[k], group_, consumer_, "0", "0-0", "COUNT",
                   std::to_string(kMostRead)});
  }
  std::vector<Reply> claimed;
  for (std::size_t i = 0; i < parts.size(); ++i) claimed.push_back(conn_->read("XAUTOCLAIM"));
  bool go_on = true;
  for (std::size_t i = 0; i < parts.size() && go_on && !paused_; ++i) {
    const std::size_t k = parts[i];
    const std::size_t before = out.size();
    if (!is_error(claimed[i].get())) {
      go_on = accept_all(at(claimed[i].get(), 1), k, out);
      for (std::string cursor(text(at(claimed[i].get(), 0))); go_on && cursor != "0-0";) {
        cursor = claim(k, "0", cursor, kMostRead, false, out);
      }
    }
    if (out.size() > before || progressed[i]) {
      log().info("stage '{}': took over {} with {} pending entries", stage_.name(), keys_[k],
                 out.size() - before);
    }
  }
}

// Every entry pending in partition k (a previous owner's, or ours) becomes ours to deliver.
void RedisInlet::claim_pending(std::size_t k, std::vector<Delivery>& out) {
  std::string cursor = "0-0";
  do cursor = claim(k, "0", cursor, kMostRead, false, out);
  while (cursor != "0-0");
}

// This process no longer works for partition k: what the engine holds of its streams is
// forgotten (its deliveries are void: the next owner runs them), and with `release` the lease
// goes at once, after what was settled is recorded.
void RedisInlet::give_up(std::size_t k, std::vector<Delivery>& out, bool release) {
  if (release) flush_acks();
  const std::optional<std::set<std::uint32_t>> streams = ledger_.give_up(k);
  if (!streams) return;
  for (std::uint32_t stream : *streams) {
    out.push_back(control(Delivery::Kind::reset, stream, 0, 0, 0));
  }
  {
    std::lock_guard lock(held_mutex_);
    std::erase_if(held_, [&](const auto& held) { return streams->contains(held.first.first); });
  }
  if (release) {
    session_.writer.add({"EVAL", kIfOurs, "1", session_.names->lease(keys_[k]), consumer_, "DEL"});
  }
}

// Entries of our partitions pending on another consumer: a former owner read them after its
// lease had expired and before it noticed, or (a sink) an older run's process read them. They
// are ours to run. One round trip asks for all the partitions (a broker far away would
// otherwise hold the reads up for one round trip per partition).
void RedisInlet::claim_strays(const std::vector<std::size_t>& parts, std::vector<Delivery>& out) {
  for (std::size_t k : parts) conn_->append({"XPENDING", keys_[k], group_, "-", "+", "256"});
  std::vector<Reply> pending;
  for (std::size_t i = 0; i < parts.size(); ++i) pending.push_back(conn_->read("XPENDING"));
  for (std::size_t i = 0; i < parts.size() && !paused_; ++i) {
    const std::size_t k = parts[i];
    Args claim{"XCLAIM", keys_[k], group_, consumer_, "0"};
    std::size_t strays = 0;
    for (std::size_t e = 0; e < size(pending[i].get()); ++e) {
      const redisReply* p = at(pending[i].get(), e);
      const std::string_view holder = text(at(p, 1));
      // A sink leaves what it refused (another pipeline version's) where refuse() put it.
      if (holder == consumer_ || (mode_ == Mode::sink && holder == group_ + ":refused")) continue;
      claim.add(text(at(p, 0)));
      ++strays;
    }
    if (strays == 0) continue;
    const Reply claimed = conn_->command(claim);
    log().info("stage '{}': claimed {} entries of {} that another process had read", stage_.name(),
               size(claimed.get()), keys_[k]);
    accept_all(claimed.get(), k, out);
  }
}

// Entries of a new run: what was known of the old one does not apply.
void RedisInlet::new_run(std::vector<Delivery>& out) {
  const bool again = std::exchange(run_, session_.run()) != 0;
  // A stage with per-stream state has the last run's streams in it, which share their ids with
  // this run's: it starts afresh, as a new run in one process does.
  if (again && stage_.config.per_stream && session_.host() != nullptr) {
    try {
      session_.host()->restart(stage_.name());
      log().info("stage '{}': a new run began; its per-stream state starts afresh", stage_.name());
    } catch (const std::exception& error) {
      log().error(
          "stage '{}': a new run began, but a new instance could not be built ({}); it "
          "keeps the last run's per-stream state",
          stage_.name(), error.what());
    }
  }
  give_up_all(out, false);
  next_upkeep_ = {};  // take the leases of the new run at once
  ledger_.forget_run();
  std::lock_guard lock(held_mutex_);
  held_.clear();
}

// ---------------------------------------------------------------------------------------------
// The keeper's side

void RedisInlet::refresh_idle(Connection& conn) {
  if (mode_ != Mode::shared) return;
  const std::vector<std::string> ids = ledger_.in_flight();
  if (ids.empty()) return;
  Args claim{"XCLAIM", keys_[0], group_, consumer_, "0"};
  for (const std::string& id : ids) claim.add(id);
  claim.add("JUSTID");  // resets the idle time, not the delivery count
  conn.command(claim);
}

void RedisInlet::renew_leases(Connection& conn) {
  if (mode_ != Mode::partitioned) return;
  const std::vector<std::size_t> owned = ledger_.readable();
  if (owned.empty()) return;
  Args renew{"EVAL", kRenewIfOurs, std::to_string(owned.size())};
  for (std::size_t k : owned) renew.add(session_.names->lease(keys_[k]));
  renew.add(consumer_).add(std::to_string(kLeaseMs));
  const Reply renewed = conn.command(renew);  // one round trip for all of them
  for (std::size_t i = 0; i < owned.size(); ++i) {
    if (integer(at(renewed.get(), i)) != 1) ledger_.lose(owned[i]);
  }
}

// Every lease goes at once, after what was settled is recorded (the writer keeps that order).
// The resets are for nobody: the engine has stopped.
void RedisInlet::leave() {
  flush_acks();
  std::vector<Delivery> none;
  give_up_all(none, true);
}

}  // namespace micromodels::detail
