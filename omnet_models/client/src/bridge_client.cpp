#include "qesif/bridge_client.hpp"

namespace qesif {

namespace {

bool loopback_or_ipc(const std::string& endpoint) {
    for (const char* prefix : {"ipc://", "tcp://127.0.0.1:", "tcp://[::1]:", "tcp://localhost:"}) {
        if (endpoint.rfind(prefix, 0) == 0) return true;
    }
    return false;
}

const nlohmann::json& field(const nlohmann::json& body, const char* name) {
    auto it = body.find(name);
    if (it == body.end()) throw BridgeError("bad-reply", std::string("reply lacks field ") + name);
    return *it;
}

}  // namespace

BridgeClient::BridgeClient(const std::string& endpoint, std::chrono::milliseconds timeout)
    : context_(1), socket_(context_, zmq::socket_type::dealer), timeout_(timeout) {
    if (!loopback_or_ipc(endpoint)) {
        throw BridgeError("endpoint", "only ipc:// or loopback tcp endpoints are allowed: " + endpoint);
    }
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::maxmsgsize, static_cast<std::int64_t>(kMaxFrameBytes + 1024));
    socket_.connect(endpoint);
}

nlohmann::json BridgeClient::call(const std::string& type, const nlohmann::json& body,
                                  const std::string& expected) {
    const std::string frame = nlohmann::json{{"v", kProtocolVersion}, {"type", type}, {"body", body}}.dump();
    if (frame.size() > kMaxFrameBytes) throw BridgeError("malformed", "request exceeds the frame limit");
    socket_.send(zmq::buffer(std::string()), zmq::send_flags::sndmore);
    socket_.send(zmq::buffer(frame), zmq::send_flags::none);

    zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}};
    if (zmq::poll(items, 1, timeout_) == 0) {
        throw BridgeError("timeout", "no reply to " + type + " within " + std::to_string(timeout_.count()) + " ms");
    }
    std::vector<zmq::message_t> parts;
    zmq::recv_result_t received;
    do {
        zmq::message_t part;
        received = socket_.recv(part, zmq::recv_flags::none);
        parts.push_back(std::move(part));
    } while (received && parts.back().more());
    if (parts.empty()) throw BridgeError("malformed", "empty reply");

    nlohmann::json reply;
    try {
        reply = nlohmann::json::parse(parts.back().to_string());
    } catch (const nlohmann::json::exception&) {
        throw BridgeError("malformed", "reply is not JSON");
    }
    if (!reply.is_object() || !reply.contains("v") || !reply.contains("type") || !reply.contains("body") ||
        !reply["body"].is_object() || !reply["type"].is_string()) {
        throw BridgeError("malformed", "reply is not a {v, type, body} object");
    }
    if (reply["v"] != kProtocolVersion) throw BridgeError("version", "orchestrator speaks another version");
    const std::string kind = reply["type"].get<std::string>();
    if (kind == "ERROR") {
        throw BridgeError(field(reply["body"], "code").get<std::string>(),
                          field(reply["body"], "detail").get<std::string>());
    }
    if (kind != expected) throw BridgeError("unexpected", "expected " + expected + ", got " + kind);
    return reply["body"];
}

Welcome BridgeClient::hello(const std::string& peer, int devices, int gateways) {
    nlohmann::json body = {
        {"version", kProtocolVersion}, {"peer", peer}, {"devices", devices}, {"gateways", gateways}};
    const nlohmann::json welcome = call("HELLO", body, "WELCOME");
    return Welcome{field(welcome, "rounds").get<int>(), field(welcome, "round_duration_s").get<double>(),
                   field(welcome, "devices").get<int>(), field(welcome, "gateways").get<int>()};
}

std::vector<Grant> BridgeClient::key_request(int round, const std::vector<Session>& sessions) {
    nlohmann::json device = nlohmann::json::array(), gateway = nlohmann::json::array(),
                   time = nlohmann::json::array();
    for (const Session& s : sessions) {
        device.push_back(s.device);
        gateway.push_back(s.gateway);
        time.push_back(s.time);
    }
    const nlohmann::json grant =
        call("KEY_REQUEST", {{"round", round}, {"device", device}, {"gateway", gateway}, {"time", time}},
             "KEY_GRANT");
    const auto& devices = field(grant, "device");
    if (!devices.is_array() || devices.size() != sessions.size()) {
        throw BridgeError("bad-reply", "KEY_GRANT does not answer every session");
    }
    std::vector<Grant> out;
    for (std::size_t i = 0; i < sessions.size(); ++i) {
        out.push_back(Grant{devices[i].get<std::int64_t>(), field(grant, "mode")[i].get<std::string>(),
                            field(grant, "handshake")[i].get<std::string>(),
                            field(grant, "cipher")[i].get<std::string>(), !field(grant, "key_id")[i].is_null(),
                            field(grant, "extra_bytes")[i].get<std::int64_t>(),
                            field(grant, "handshake_device_s")[i].get<double>()});
    }
    return out;
}

void BridgeClient::bye(const std::string& reason) { call("BYE", {{"reason", reason}}, "BYE"); }

}  // namespace qesif
