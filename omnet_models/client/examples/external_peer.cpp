// A complete external network peer on the C++ client: the same deliberately simple network as
// docs/examples/external_peer.py (see its docstring), so both give the same results table.
// Usage: qesif run SCENARIO --peer 'build/cpp/qesif_external_peer {endpoint} {schedule} {topology}'
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "qesif/bridge_client.hpp"

namespace {

constexpr double kBitrate = 250e3;        // bit/s
constexpr std::int64_t kHeaderBytes = 25;  // MAC + 6LoWPAN + UDP + application headers of a message
constexpr double kBackhaulS = 1e-3;
constexpr double kPTx = 0.0522, kPCpu = 0.024, kPSleep = 60e-6;  // W

using Message = std::tuple<std::int64_t, double, std::int64_t, std::int64_t>;  // device, time, payload, record

std::vector<std::vector<std::string>> read_csv(const std::string& path, const std::string& header) {
    std::ifstream in(path);
    std::string line;
    if (!in || !std::getline(in, line) || line != header)
        throw std::runtime_error(path + ": cannot read a table with header " + header);
    std::vector<std::vector<std::string>> rows;
    while (std::getline(in, line)) {
        std::vector<std::string> fields;
        std::istringstream row(line);
        for (std::string field; std::getline(row, field, ',');) fields.push_back(field);
        rows.push_back(fields);
    }
    return rows;
}

struct Costs {
    std::int64_t up = 0, down = 0, extra = 0;
    double hs_device = 0, hs_gateway = 0, dev_fixed = 0, dev_block = 0, gw_fixed = 0, gw_byte = 0;
};

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::cerr << "usage: " << argv[0] << " ENDPOINT SCHEDULE_CSV TOPOLOGY_CSV\n";
        return 2;
    }
    try {
        std::vector<std::int64_t> gateway_of;
        for (const auto& row : read_csv(argv[3], "device,gateway,protocol")) gateway_of.push_back(std::stoll(row.at(1)));
        const auto devices = static_cast<std::int64_t>(gateway_of.size());
        const std::int64_t gateways = *std::max_element(gateway_of.begin(), gateway_of.end()) + 1;
        qesif::BridgeClient client(argv[1], std::chrono::milliseconds(60000));
        const auto welcome = client.hello("example-peer-cpp", static_cast<int>(devices), static_cast<int>(gateways));
        const double duration = welcome.round_duration_s;
        std::vector<std::vector<Message>> by_round(welcome.rounds);
        for (const auto& row : read_csv(argv[2], "device,time,payload,record")) {
            const double time = std::stod(row.at(1));
            by_round.at(static_cast<std::size_t>(std::floor(time / duration)))
                .emplace_back(std::stoll(row.at(0)), time, std::stoll(row.at(2)), std::stoll(row.at(3)));
        }
        std::vector<double> free_at(devices, 0.0);
        std::vector<Costs> costs_of(devices);
        std::vector<std::tuple<double, double, std::int64_t>> pending;  // delivery, generation, payload
        std::int64_t sent_total = 0, delivered_total = 0;
        for (int r = 0; r < welcome.rounds; r++) {
            const double start = r * duration, end = (r + 1) * duration;
            const auto& messages = by_round[r];
            std::map<std::int64_t, double> first;
            for (const auto& [device, time, payload, record] : messages) first.emplace(device, time);
            nlohmann::json request = {{"round", r}, {"device", nlohmann::json::array()},
                                      {"gateway", nlohmann::json::array()}, {"time", nlohmann::json::array()}};
            for (const auto& [device, time] : first) {
                if (free_at[device] > start) continue;  // still busy: keeps its session
                request["device"].push_back(device);
                request["gateway"].push_back(gateway_of[device]);
                request["time"].push_back(time);
            }
            const auto grant = client.call("KEY_REQUEST", request, "KEY_GRANT");
            std::map<std::int64_t, double> energy;
            for (const auto& [device, time] : first) energy[device] = 0.0;
            std::int64_t frames = 0;
            for (std::size_t i = 0; i < grant["device"].size(); i++) {
                const auto device = grant["device"][i].get<std::int64_t>();
                Costs& c = costs_of[device];
                c.up = grant["handshake_up_bytes"][i].get<std::int64_t>();
                c.down = grant["handshake_down_bytes"][i].get<std::int64_t>();
                c.extra = grant["extra_bytes"][i].get<std::int64_t>();
                c.hs_device = grant["handshake_device_s"][i].get<double>();
                c.hs_gateway = grant["handshake_gateway_s"][i].get<double>();
                c.dev_fixed = grant["cipher_device_s_fixed"][i].get<double>();
                c.dev_block = grant["cipher_device_s_per_block"][i].get<double>();
                c.gw_fixed = grant["cipher_gateway_s_fixed"][i].get<double>();
                c.gw_byte = grant["cipher_gateway_s_per_byte"][i].get<double>();
                const double airtime = static_cast<double>((c.up + c.down) * 8) / kBitrate;
                free_at[device] = std::max(free_at[device], first[device]) + c.hs_device + c.hs_gateway + airtime;
                energy[device] += kPTx * airtime + kPCpu * c.hs_device;
                frames += (c.up > 0) + (c.down > 0);
            }
            auto ordered = messages;
            std::sort(ordered.begin(), ordered.end());
            for (const auto& [device, time, payload, record] : ordered) {
                const Costs& c = costs_of[device];
                const double cpu = c.dev_fixed + c.dev_block * static_cast<double>((payload + 15) / 16);
                const double airtime = static_cast<double>((payload + c.extra + kHeaderBytes) * 8) / kBitrate;
                const double gateway_cpu = c.gw_fixed + c.gw_byte * static_cast<double>(payload);
                const double begin = std::max(time, free_at[device]);
                free_at[device] = begin + cpu + airtime + gateway_cpu + kBackhaulS;
                pending.emplace_back(free_at[device], time, payload);
                energy[device] += kPTx * airtime + kPCpu * cpu;
                frames += 1;
            }
            sent_total += static_cast<std::int64_t>(messages.size());
            auto split = std::stable_partition(pending.begin(), pending.end(),
                                               [end](const auto& m) { return std::get<0>(m) <= end; });
            std::vector<std::tuple<double, double, std::int64_t>> done(pending.begin(), split);
            pending.erase(pending.begin(), split);
            delivered_total += static_cast<std::int64_t>(done.size());
            nlohmann::json latency = nlohmann::json::array(), records = nlohmann::json::array(),
                           record_gateway = nlohmann::json::array(), sessions = nlohmann::json::array(),
                           energies = nlohmann::json::array();
            std::int64_t payload_bytes = 0;
            for (const auto& [delivery, generated, payload] : done) {
                latency.push_back(delivery - generated);
                payload_bytes += payload;
            }
            std::map<std::int64_t, bool> carried;
            for (const auto& [device, time, payload, record] : messages) {
                if (carried.emplace(record, true).second) {
                    records.push_back(record);
                    record_gateway.push_back(gateway_of[device]);
                }
            }
            for (const auto& [device, joules] : energy) {
                sessions.push_back(device);
                energies.push_back(joules + kPSleep * duration);
            }
            const nlohmann::json telemetry = {
                {"round", r}, {"messages_sent", messages.size()}, {"messages_delivered", done.size()},
                {"messages_lost", 0}, {"queue_drops", 0}, {"in_flight", sent_total - delivered_total},
                {"payload_bytes_delivered", payload_bytes}, {"latency_s", latency},
                {"session_device", sessions}, {"session_energy_j", energies}, {"record", records},
                {"record_gateway", record_gateway}, {"frames", frames}, {"mac_drops", 0}, {"retransmissions", 0}};
            client.call("TELEMETRY", telemetry, "VERDICT");  // this example does not react to the verdict
        }
        client.bye("done");
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "external peer: " << e.what() << "\n";
        return 1;
    }
}
