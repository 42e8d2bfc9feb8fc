// C++ client of the qesif orchestrator's ZeroMQ protocol (docs/protocol.md), independent of OMNeT++.
//
// One request, one reply: every frame is a JSON object {"v": 1, "type": ..., "body": {...}} sent on a
// DEALER socket behind an empty delimiter (the REQ envelope), and every reply is awaited with a timeout.
// Replies are checked (version, type, body object); an ERROR reply or a timeout throws BridgeError.
// Grants carry key IDs only: no key material ever crosses the bridge.
#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

namespace qesif {

constexpr int kProtocolVersion = 1;
constexpr std::size_t kMaxFrameBytes = 16u * 1024u * 1024u;

class BridgeError : public std::runtime_error {
  public:
    BridgeError(const std::string& code, const std::string& detail)
        : std::runtime_error(code + ": " + detail), code_(code) {}
    const std::string& code() const { return code_; }

  private:
    std::string code_;
};

struct Session {
    std::int64_t device;
    std::int64_t gateway;
    double time;
};

struct Grant {
    std::int64_t device;
    std::string mode;       // quantum | classical | pq-hybrid
    std::string handshake;  // qkd-psk | x25519 | x25519-mlkem768 | mlkem768
    std::string cipher;
    bool has_key_id;        // a QKD key was reserved (its ID only; never the key)
    std::int64_t extra_bytes;
    double handshake_device_s;
};

struct Welcome {
    int rounds;
    double round_duration_s;
    int devices;
    int gateways;
};

class BridgeClient {
  public:
    // endpoint: ipc://... or tcp://127.0.0.1:PORT (loopback only); timeout for every reply.
    BridgeClient(const std::string& endpoint, std::chrono::milliseconds timeout);

    // Send one message and return the reply body of the expected type.
    nlohmann::json call(const std::string& type, const nlohmann::json& body, const std::string& expected);

    Welcome hello(const std::string& peer, int devices, int gateways);
    std::vector<Grant> key_request(int round, const std::vector<Session>& sessions);
    void bye(const std::string& reason);

  private:
    zmq::context_t context_;
    zmq::socket_t socket_;
    std::chrono::milliseconds timeout_;
};

}  // namespace qesif
