// HELLO, one KEY_REQUEST and BYE against a running orchestrator: the CI check of the C++ client.
// Usage: qesif_bridge_demo ENDPOINT DEVICES GATEWAYS [TIMEOUT_MS]. Prints the plan of each session (never key bytes:
// none cross the bridge; a reserved QKD key shows as "key-id reserved").
#include <algorithm>
#include <cstdlib>
#include <iostream>

#include "qesif/bridge_client.hpp"

int main(int argc, char** argv) {
    if (argc != 4 && argc != 5) {
        std::cerr << "usage: " << argv[0] << " ENDPOINT DEVICES GATEWAYS [TIMEOUT_MS]\n";
        return 2;
    }
    try {
        const int devices = std::atoi(argv[2]);
        const int gateways = std::atoi(argv[3]);
        const long timeout_ms = argc == 5 ? std::atol(argv[4]) : 10000;
        qesif::BridgeClient client(argv[1], std::chrono::milliseconds(timeout_ms));
        const qesif::Welcome welcome = client.hello("qesif-cpp-demo", devices, gateways);
        std::cout << "WELCOME rounds=" << welcome.rounds << " devices=" << welcome.devices << "\n";
        std::vector<qesif::Session> sessions;
        for (int d = 0; d < devices; d += std::max(1, devices / 4)) {
            sessions.push_back({d, static_cast<std::int64_t>(d) * gateways / devices, 0.01 * (d + 1)});
        }
        const auto grants = client.key_request(0, sessions);
        for (const auto& g : grants) {
            std::cout << "KEY_GRANT device=" << g.device << " mode=" << g.mode << " handshake=" << g.handshake
                      << " cipher=" << g.cipher << (g.has_key_id ? " key-id reserved" : " no-key")
                      << " extra_bytes=" << g.extra_bytes << "\n";
        }
        client.bye("demo done");
        std::cout << "BYE\n";
        return 0;
    } catch (const qesif::BridgeError& e) {
        std::cerr << "bridge error " << e.what() << "\n";
        return 1;
    }
}
