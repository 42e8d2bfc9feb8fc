// The bridge to the qesif orchestrator (see QesifBridge.ned and docs/protocol.md).
#include "QesifBridge.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>

#include "QesifDeviceApp.h"
#include "inet/common/Simsignals.h"
#include "inet/physicallayer/wireless/common/contract/packetlevel/IRadio.h"
#include "inet/physicallayer/wireless/common/contract/packetlevel/ITransmission.h"

using namespace omnetpp;
using nlohmann::json;

namespace qesif {

Define_Module(QesifBridge);

QesifBridge *QesifBridge::of(cModule *anyModule)
{
    cModule *bridge = anyModule->getSimulation()->getSystemModule()->getSubmodule("bridge");
    return check_and_cast<QesifBridge *>(bridge);
}

void QesifBridge::initialize(int stage)
{
    if (stage == 0) {
        rounds_ = par("rounds");
        roundDuration_ = par("roundDuration").doubleValue();
        sessionRounds_ = par("sessionRounds");
        if (rounds_ < 1 || roundDuration_ <= 0 || sessionRounds_ < 1)
            throw cRuntimeError("rounds, roundDuration and sessionRounds must be positive");
        cModule *network = getParentModule();
        int n = network->par("numDevices");
        for (int d = 0; d < n; d++) {
            cModule *app = network->getSubmodule(par("deviceModule").stringValue(), d)->getSubmodule("app", 0);
            devices_.push_back(check_and_cast<QesifDeviceApp *>(app));
            gatewayOf_.push_back(app->par("gateway").intValue());
        }
        costs_.assign(n, SessionCosts{});
        due_.assign(n, true);  // no session yet
        flagged_.assign(network->par("numGateways").intValue(), false);
        loadTraffic(par("trafficFile").stdstringValue());
        cModule *top = getSimulation()->getSystemModule();
        top->subscribe(inet::transmissionStartedSignal, this);
        top->subscribe(inet::packetDroppedSignal, this);
    }
    else {
        auto timeout = std::chrono::milliseconds((long)std::llround(par("timeout").doubleValue() * 1000));
        client_ = std::make_unique<BridgeClient>(par("endpoint").stdstringValue(), timeout);
        Welcome welcome = client_->hello("qesif-omnetpp", (int)devices_.size(), (int)flagged_.size());
        if (welcome.rounds != rounds_ || welcome.devices != (int)devices_.size())
            throw cRuntimeError("WELCOME describes another run (%d rounds, %d devices)", welcome.rounds, welcome.devices);
        boundary_ = new cMessage("round-boundary");
        boundary_->setSchedulingPriority(-100);  // before any other event at the same time
        scheduleAt(SIMTIME_ZERO, boundary_);
    }
}

// The schedule written by the launcher: one row per application message, sorted by time.
void QesifBridge::loadTraffic(const std::string& path)
{
    std::ifstream in(path);
    if (!in)
        throw cRuntimeError("cannot read the traffic file '%s'", path.c_str());
    std::string line;
    std::getline(in, line);
    if (line != "device,time,payload,record")
        throw cRuntimeError("%s: header must be 'device,time,payload,record'", path.c_str());
    std::vector<std::vector<ScheduledMessage>> perDevice(devices_.size());
    roundDevices_.assign(rounds_, {});
    roundRecords_.assign(rounds_, {});
    std::vector<std::vector<bool>> seenRecord(rounds_);
    std::vector<int> lastRound(devices_.size(), -1);  // the file is in time order: rounds never decrease
    long lineNo = 1;
    while (std::getline(in, line)) {
        lineNo++;
        std::istringstream row(line);
        std::string field[4];
        for (auto& f : field)
            std::getline(row, f, ',');
        int device = std::stoi(field[0]);
        ScheduledMessage message{std::stod(field[1]), std::stoi(field[2]), std::stol(field[3])};
        int round = (int)std::floor(message.time / roundDuration_);
        if (device < 0 || device >= (int)devices_.size() || round < 0 || round >= rounds_)
            throw cRuntimeError("%s line %ld: device or time out of range", path.c_str(), lineNo);
        perDevice[device].push_back(message);
        if (lastRound[device] != round) {  // the device's first message of the round
            lastRound[device] = round;
            roundDevices_[round].push_back({device, message.time});
        }
        auto& seen = seenRecord[round];
        if ((long)seen.size() <= message.record)
            seen.resize(message.record + 1, false);
        if (!seen[message.record]) {
            seen[message.record] = true;
            roundRecords_[round].push_back({message.record, gatewayOf_[device]});
        }
    }
    for (auto& devs : roundDevices_)
        std::sort(devs.begin(), devs.end());
    for (auto& records : roundRecords_)
        std::sort(records.begin(), records.end());
    for (std::size_t d = 0; d < devices_.size(); d++)
        devices_[d]->setSchedule(std::move(perDevice[d]));
}

void QesifBridge::handleMessage(cMessage *msg)
{
    if (msg != boundary_)
        throw cRuntimeError("unexpected message %s", msg->getName());
    if (currentRound_ > 0)
        reportRound(currentRound_ - 1);
    if (currentRound_ == rounds_) {
        client_->bye("done");
        done_ = true;
        endSimulation();
        return;
    }
    round_ = RoundCounters{};
    requestKeys(currentRound_);
    currentRound_++;
    scheduleAt(SimTime(currentRound_ * roundDuration_), boundary_);
}

// KEY_REQUEST for the sessions starting in the round: devices with messages in it, not busy, whose
// session is due (staggered renewal every sessionRounds rounds, or after their link's flag changed).
void QesifBridge::requestKeys(int round)
{
    json body = {{"round", round}, {"device", json::array()}, {"gateway", json::array()}, {"time", json::array()}};
    std::vector<int> starting;
    for (const auto& [d, first] : roundDevices_[round]) {
        if ((round + d % sessionRounds_) % sessionRounds_ == 0)
            due_[d] = true;
        if (!due_[d] || device(d)->busy())
            continue;
        starting.push_back(d);
        body["device"].push_back(d);
        body["gateway"].push_back(gatewayOf_[d]);
        body["time"].push_back(first);
    }
    json grant = client_->call("KEY_REQUEST", body, "KEY_GRANT");
    if (grant.at("device").size() != starting.size())
        throw cRuntimeError("KEY_GRANT of round %d does not list the requested sessions", round);
    for (std::size_t i = 0; i < starting.size(); i++) {
        int d = starting[i];
        if (grant["device"][i].get<int>() != d)
            throw cRuntimeError("KEY_GRANT of round %d lists device %d out of order", round, d);
        SessionCosts& c = costs_[d];
        c.handshakeUpBytes = grant["handshake_up_bytes"][i].get<long>();
        c.handshakeDownBytes = grant["handshake_down_bytes"][i].get<long>();
        c.extraBytes = grant["extra_bytes"][i].get<long>();
        c.handshakeDeviceS = grant["handshake_device_s"][i].get<double>();
        c.handshakeGatewayS = grant["handshake_gateway_s"][i].get<double>();
        c.cipherDeviceSFixed = grant["cipher_device_s_fixed"][i].get<double>();
        c.cipherDeviceSPerBlock = grant["cipher_device_s_per_block"][i].get<double>();
        c.cipherGatewaySFixed = grant["cipher_gateway_s_fixed"][i].get<double>();
        c.cipherGatewaySPerByte = grant["cipher_gateway_s_per_byte"][i].get<double>();
        due_[d] = false;
        device(d)->startSession(c);
    }
}

// TELEMETRY for the round just ended; the VERDICT makes the devices of a link whose flag changed due.
void QesifBridge::reportRound(int round)
{
    std::vector<double> energy(devices_.size());
    long inFlight = 0;
    for (std::size_t d = 0; d < devices_.size(); d++) {
        energy[d] = devices_[d]->takeRoundEnergy(roundDuration_);
        inFlight += devices_[d]->inFlight();
    }
    if (round == rounds_ - 1)  // unconfirmed messages never delivered were lost (no ACK tells when)
        round_.lost += unconfirmedSent_ - unconfirmedDelivered_;
    json body = {{"round", round},
                 {"messages_sent", round_.sent},
                 {"messages_delivered", round_.delivered},
                 {"messages_lost", round_.lost},
                 {"queue_drops", round_.queueDrops},
                 {"in_flight", inFlight},
                 {"payload_bytes_delivered", round_.payloadBytes},
                 {"latency_s", round_.latencyS},
                 {"session_device", json::array()},
                 {"session_energy_j", json::array()},
                 {"record", json::array()},
                 {"record_gateway", json::array()},
                 {"frames", round_.frames},
                 {"mac_drops", round_.macDrops},
                 {"retransmissions", round_.retransmissions}};
    for (const auto& [d, first] : roundDevices_[round]) {
        body["session_device"].push_back(d);
        body["session_energy_j"].push_back(energy[d]);
    }
    for (const auto& [record, gateway] : roundRecords_[round]) {
        body["record"].push_back(record);
        body["record_gateway"].push_back(gateway);
    }
    json verdict = client_->call("TELEMETRY", body, "VERDICT");
    const auto& flags = verdict.at("link_flagged");
    for (std::size_t g = 0; g < flags.size() && g < flagged_.size(); g++) {
        bool flag = flags[g].get<bool>();
        if (flag != flagged_[g])
            for (std::size_t d = 0; d < devices_.size(); d++)
                if (gatewayOf_[d] == (int)g)
                    due_[d] = true;
        flagged_[g] = flag;
    }
}

void QesifBridge::countDelivered(double latencyS, long payloadBytes, bool confirmable, int device, long seq)
{
    delivered_.insert({device, seq});
    round_.delivered++;
    round_.payloadBytes += payloadBytes;
    round_.latencyS.push_back(latencyS);
    if (!confirmable)
        unconfirmedDelivered_++;
}

void QesifBridge::receiveSignal(cComponent *source, simsignal_t signal, cObject *obj, cObject *details)
{
    if (signal == inet::transmissionStartedSignal && dynamic_cast<inet::physicallayer::IRadio *>(source) != nullptr) {
        // access data frames (fragments and MAC retries included), not MAC ACKs (802.15.4 "CSMA-Ack",
        // 802.11 "WlanAck") nor the Ethernet backhaul's frames
        auto transmission = check_and_cast<const inet::physicallayer::ITransmission *>(obj);
        const char *name = transmission->getPacket()->getName();
        if (strcmp(name, "CSMA-Ack") != 0 && strcmp(name, "WlanAck") != 0)
            round_.frames++;
    }
    else if (signal == inet::packetDroppedSignal && details != nullptr) {
        // frames an access MAC gave up on (no ACK after the retries, or no clear channel): not the
        // overheard frames for other stations or corrupted receptions, which MACs also report as drops
        auto reason = check_and_cast<inet::PacketDropDetails *>(details)->getReason();
        if ((reason == inet::RETRY_LIMIT_REACHED || reason == inet::CONGESTION) &&
            strstr(source->getFullPath().c_str(), ".wlan[") != nullptr)
            round_.macDrops++;
    }
}

void QesifBridge::finish()
{
    if (!done_)
        EV_WARN << "simulation ended before the last round's TELEMETRY (sim-time-limit too short?)" << endl;
    recordScalar("rounds", currentRound_);
}

}  // namespace qesif
