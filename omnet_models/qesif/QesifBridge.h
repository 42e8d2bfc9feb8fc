// The bridge between the OMNeT++/INET network and the qesif orchestrator (see QesifBridge.ned).
#pragma once

#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <omnetpp.h>

#include "qesif/bridge_client.hpp"

namespace qesif {

class QesifDeviceApp;

// Costs of a device's security session, from a KEY_GRANT (bridge/cosim/protocol.py field names).
struct SessionCosts {
    long handshakeUpBytes = 0;
    long handshakeDownBytes = 0;
    long extraBytes = 0;
    double handshakeDeviceS = 0;
    double handshakeGatewayS = 0;
    double cipherDeviceSFixed = 0;
    double cipherDeviceSPerBlock = 0;
    double cipherGatewaySFixed = 0;
    double cipherGatewaySPerByte = 0;
};

// One scheduled application message of a device.
struct ScheduledMessage {
    double time;
    int payload;
    long record;
};

class QesifBridge : public omnetpp::cSimpleModule, public omnetpp::cListener
{
  public:
    ~QesifBridge() override { cancelAndDelete(boundary_); }
    static QesifBridge *of(omnetpp::cModule *anyModule);

    // Counters of the current round, called by the applications.
    void countSent() { round_.sent++; }
    void countQueueDrop() { round_.queueDrops++; }
    // A message given up counts as lost unless its request reached the broker (then it was delivered, once).
    void countLost(int device, long seq)
    {
        if (delivered_.count({device, seq}) == 0)
            round_.lost++;
    }
    bool delivered(int device, long seq) const { return delivered_.count({device, seq}) > 0; }
    void countRetransmission() { round_.retransmissions++; }
    void countUnconfirmedSent() { unconfirmedSent_++; }
    void countDelivered(double latencyS, long payloadBytes, bool confirmable, int device, long seq);
    // The session costs of a device's gateway (the gateway's CPU per message); kept per device.
    const SessionCosts& costsOf(int device) const { return costs_.at(device); }
    bool linkFlagged(int gateway) const { return gateway < (int)flagged_.size() && flagged_[gateway]; }

  protected:
    int numInitStages() const override { return 2; }
    void initialize(int stage) override;
    void handleMessage(omnetpp::cMessage *msg) override;
    void finish() override;
    void receiveSignal(omnetpp::cComponent *source, omnetpp::simsignal_t signal, omnetpp::cObject *obj,
                       omnetpp::cObject *details) override;

  private:
    struct RoundCounters {
        long sent = 0, delivered = 0, lost = 0, queueDrops = 0, payloadBytes = 0;
        long frames = 0, macDrops = 0, retransmissions = 0;
        std::vector<double> latencyS;
    };

    void loadTraffic(const std::string& path);
    void requestKeys(int round);
    void reportRound(int round);
    QesifDeviceApp *device(int index) const { return devices_.at(index); }

    std::unique_ptr<BridgeClient> client_;
    std::vector<QesifDeviceApp *> devices_;
    std::vector<int> gatewayOf_;
    std::vector<std::vector<ScheduledMessage>> schedule_;   // per device, by time
    std::vector<std::vector<std::pair<int, double>>> roundDevices_;  // per round: (device, first message time)
    std::vector<std::vector<std::pair<long, int>>> roundRecords_;  // per round: (record, gateway), first by time
    std::vector<SessionCosts> costs_;
    std::vector<bool> due_;
    std::vector<bool> flagged_;
    RoundCounters round_;
    omnetpp::cMessage *boundary_ = nullptr;
    int rounds_ = 0;
    int sessionRounds_ = 1;
    int currentRound_ = 0;
    double roundDuration_ = 0;
    long unconfirmedSent_ = 0, unconfirmedDelivered_ = 0;
    std::set<std::pair<int, long>> delivered_;  // (device, message number) of every delivered message
    bool done_ = false;
};

}  // namespace qesif
