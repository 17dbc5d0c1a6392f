#include <optreg/mpi.hpp>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace optreg::mpi {
namespace {

std::string mpi_message(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<std::size_t>(length));
}

void check(int code, const std::string& what, int rank) {
  if (code != MPI_SUCCESS) throw RankError(what + ": " + mpi_message(code), rank);
}

std::string seconds_text(double s) {
  std::string t = std::to_string(s);
  t.erase(t.find_last_not_of('0') + 1);
  if (!t.empty() && t.back() == '.') t.pop_back();
  return t + " s";
}

/// One message of at most INT_MAX bytes is one request; a larger part goes in several, which
/// MPI keeps in order (same source, tag and communicator).
constexpr std::size_t kChunk = std::size_t{1} << 30;

}  // namespace

RankError::RankError(const std::string& message, int rank) : Error(message), rank_(rank) {}
RankError::~RankError() = default;

Environment::Environment(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized != 0) return;
  int provided = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    throw RankError("MPI could not be started (MPI_Init_thread)", -1);
  }
  started_ = true;
}

Environment::~Environment() {
  if (!started_) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized == 0) MPI_Finalize();
}

bool Environment::launched() noexcept {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr ||
         std::getenv("PMI_SIZE") != nullptr;
}

Communicator::Communicator(MPI_Comm comm, double timeout_seconds) : comm_(comm) {
  set_timeout(timeout_seconds);
  check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler", -1);
  check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank", -1);
  check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size", -1);
}

void Communicator::set_timeout(double seconds) {
  if (!(seconds > 0) || seconds > 1e7) {
    throw UsageError("an MPI timeout must be a positive number of seconds (at most 1e7), not " +
                     std::to_string(seconds));
  }
  timeout_ = seconds;
}

void Communicator::exchange(const std::vector<ConstBytes>& send, const std::vector<Bytes>& recv,
                            const std::string& what) {
  const auto n = static_cast<std::size_t>(size_);
  if (send.size() != n || recv.size() != n) {
    throw UsageError("exchange '" + what + "': one buffer per rank is needed (" + std::to_string(n) + "), not " +
                     std::to_string(send.size()) + " to send and " + std::to_string(recv.size()) + " to receive");
  }
  const auto self = static_cast<std::size_t>(rank_);
  if (send[self].size != recv[self].size) {
    throw UsageError("exchange '" + what + "': this rank's part to itself has " + std::to_string(send[self].size) +
                     " bytes to send but room for " + std::to_string(recv[self].size));
  }
  if (send[self].size != 0 && send[self].data != recv[self].data) {
    std::memmove(recv[self].data, send[self].data, send[self].size);
  }
  const int tag = sequence_++ % 30000;
  std::vector<MPI_Request> requests;
  std::vector<int> peer_of;   // the rank each request receives from; -1 - rank for a send
  std::vector<int> expected;  // the bytes each request moves
  // After an error, the requests still pending are cancelled (receives) and released, so that
  // nothing lands later in buffers the caller frees.
  const auto abandon = [&]() noexcept {
    for (std::size_t i = 0; i < requests.size(); ++i) {
      if (requests[i] == MPI_REQUEST_NULL) continue;
      if (peer_of[i] >= 0) MPI_Cancel(&requests[i]);
      MPI_Request_free(&requests[i]);
    }
  };
  const auto rank_of = [&](std::size_t i) { return peer_of[i] >= 0 ? peer_of[i] : -1 - peer_of[i]; };
  auto post = [&](bool receiving, std::size_t peer, unsigned char* data, std::size_t size) {
    std::size_t at = 0;
    do {  // one request even for an empty part: its arrival says the peer is here
      const int count = static_cast<int>(std::min(kChunk, size - at));
      MPI_Request r;
      const int code = receiving ? MPI_Irecv(data + at, count, MPI_BYTE, static_cast<int>(peer), tag, comm_, &r)
                                 : MPI_Isend(data + at, count, MPI_BYTE, static_cast<int>(peer), tag, comm_, &r);
      if (code != MPI_SUCCESS) abandon();
      check(code, what + (receiving ? ": receiving from rank " : ": sending to rank ") + std::to_string(peer),
            static_cast<int>(peer));
      requests.push_back(r);
      peer_of.push_back(receiving ? static_cast<int>(peer) : -1 - static_cast<int>(peer));
      expected.push_back(count);
      at += static_cast<std::size_t>(count);
    } while (at < size);
  };
  // Receives first, so that no message waits for its buffer; then sends, from the next rank on.
  for (std::size_t k = 1; k < n; ++k) {
    const std::size_t peer = (self + n - k) % n;
    post(true, peer, static_cast<unsigned char*>(recv[peer].data), recv[peer].size);
  }
  for (std::size_t k = 1; k < n; ++k) {
    const std::size_t peer = (self + k) % n;
    post(false, peer, static_cast<unsigned char*>(const_cast<void*>(send[peer].data)), send[peer].size);
  }
  // The timeout counts from the last progress: a large exchange that keeps moving is never cut.
  const auto timeout = std::chrono::duration<double>(timeout_);
  std::size_t done = 0;
  std::vector<int> indices(requests.size());
  std::vector<MPI_Status> statuses(requests.size());
  int idle = 0;
  auto last_progress = std::chrono::steady_clock::now();
  while (done < requests.size()) {
    int outcount = 0;
    const int code =
        MPI_Testsome(static_cast<int>(requests.size()), requests.data(), &outcount, indices.data(), statuses.data());
    if (code != MPI_SUCCESS) {
      // The request that failed says so in its status; else name the first still pending.
      int peer = -1;
      int reason = code;
      for (int k = 0; code == MPI_ERR_IN_STATUS && k < outcount && outcount != MPI_UNDEFINED; ++k) {
        if (statuses[static_cast<std::size_t>(k)].MPI_ERROR != MPI_SUCCESS) {
          peer = rank_of(static_cast<std::size_t>(indices[static_cast<std::size_t>(k)]));
          reason = statuses[static_cast<std::size_t>(k)].MPI_ERROR;
          break;
        }
      }
      for (std::size_t i = 0; peer < 0 && i < requests.size(); ++i) {
        if (requests[i] != MPI_REQUEST_NULL) peer = rank_of(i);
      }
      abandon();
      throw RankError(what + ": the exchange with rank " + std::to_string(peer) + " failed: " + mpi_message(reason),
                      peer);
    }
    if (outcount > 0 && outcount != MPI_UNDEFINED) {
      for (int k = 0; k < outcount; ++k) {
        const auto i = static_cast<std::size_t>(indices[static_cast<std::size_t>(k)]);
        if (peer_of[i] < 0) continue;
        int got = 0;
        MPI_Get_count(&statuses[static_cast<std::size_t>(k)], MPI_BYTE, &got);
        if (got != expected[i]) {  // MPI accepts a shorter message without an error
          abandon();
          throw RankError(what + ": rank " + std::to_string(peer_of[i]) + " sent " + std::to_string(got) +
                              " bytes where rank " + std::to_string(rank_) + " expected " +
                              std::to_string(expected[i]) + ": the ranks disagree on what they exchange",
                          peer_of[i]);
        }
      }
      done += static_cast<std::size_t>(outcount);
      idle = 0;
      last_progress = std::chrono::steady_clock::now();
      continue;
    }
    if (std::chrono::steady_clock::now() - last_progress > timeout) {
      // Name the first peer whose part has not arrived (a receive), else one that took none.
      int peer = -1;
      bool receiving = false;
      for (std::size_t i = 0; i < requests.size() && !receiving; ++i) {
        if (requests[i] == MPI_REQUEST_NULL) continue;
        if (peer_of[i] >= 0) {
          peer = peer_of[i];
          receiving = true;
        } else if (peer < 0) {
          peer = rank_of(i);
        }
      }
      abandon();
      throw RankError(what + ": rank " + std::to_string(peer) + (receiving ? " sent nothing" : " took nothing") +
                          " within the timeout of " + seconds_text(timeout_) + " (rank " + std::to_string(rank_) +
                          " waited); it died, hangs or is elsewhere in the program",
                      peer);
    }
    // Poll: MPI moves large messages only inside MPI calls, so a sleep here would stall them.
    // Yield to ranks that share the core (oversubscribed runs); only a peer that has sent
    // nothing for a long while (elsewhere in the program, or gone) is waited for in sleeps.
    if (++idle > 64) {
      if (std::chrono::steady_clock::now() - last_progress > std::chrono::seconds(2)) {
        std::this_thread::sleep_for(std::chrono::microseconds(500));
      } else {
        std::this_thread::yield();
      }
    }
  }
}

std::vector<unsigned char> Communicator::allgather(const void* mine, std::size_t size, const std::string& what) {
  const auto n = static_cast<std::size_t>(size_);
  std::vector<unsigned char> all(size * n);
  std::vector<ConstBytes> send(n, ConstBytes{mine, size});
  std::vector<Bytes> recv(n);
  for (std::size_t r = 0; r < n; ++r) recv[r] = Bytes{all.data() + r * size, size};
  exchange(send, recv, what);
  return all;
}

void Communicator::agree(const std::string& error, const std::string& what, double timeout_seconds) {
  const double kept = timeout_;
  if (timeout_seconds > timeout_) timeout_ = timeout_seconds;
  struct Restore {
    double& timeout;
    double value;
    ~Restore() { timeout = value; }
  } restore{timeout_, kept};
  constexpr std::size_t kText = 1024;
  std::vector<unsigned char> mine(kText + 1, 0);
  mine[0] = error.empty() ? 0 : 1;
  std::memcpy(mine.data() + 1, error.data(), std::min(error.size(), kText - 1));
  const auto all = allgather(mine.data(), mine.size(), what);
  for (int r = 0; r < size_; ++r) {
    const unsigned char* m = all.data() + static_cast<std::size_t>(r) * mine.size();
    if (m[0] == 0) continue;
    const char* text = reinterpret_cast<const char*>(m + 1);
    throw RankError(what + ": rank " + std::to_string(r) + " failed: " + std::string(text, strnlen(text, kText - 1)),
                    r);
  }
}

void Communicator::abort(int code) const noexcept {
  MPI_Abort(comm_, code);
  std::_Exit(code);
}

}  // namespace optreg::mpi
