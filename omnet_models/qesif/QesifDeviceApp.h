// An IoT device's application (see QesifDeviceApp.ned).
#pragma once

#include <deque>

#include "QesifMessage_m.h"
#include "QesifUdpApp.h"

namespace qesif {

class QesifDeviceApp : public QesifUdpApp, public omnetpp::cListener
{
  public:
    ~QesifDeviceApp() override;
    // Called by the bridge before the simulation starts: the device's messages, by time.
    void setSchedule(std::vector<ScheduledMessage> schedule) { schedule_ = std::move(schedule); }
    // A new security session (granted at a round start): its handshake precedes the next message.
    void startSession(const SessionCosts& costs);
    bool busy() const { return phase_ != IDLE || !queue_.empty(); }
    // Messages queued or under way whose delivery the broker has not recorded yet.
    long inFlight() const;
    // Radio (INET's energy consumer) plus MCU energy since the last call; the MCU sleeps when not computing.
    double takeRoundEnergy(double roundDurationS);

  protected:
    enum Phase { IDLE, HANDSHAKE, CONNECT, MESSAGE };
    enum Timer { ARRIVAL = 1, CPU_DONE, RETRY };

    void initialize(int stage) override;
    void started() override;
    void handleMessageWhenUp(omnetpp::cMessage *msg) override;
    void socketDataArrived(inet::UdpSocket *socket, inet::Packet *packet) override;
    void receiveSignal(omnetpp::cComponent *source, omnetpp::simsignal_t signal, double value,
                       omnetpp::cObject *details) override;

  private:
    void arrive();
    void startNext();
    void compute(double seconds);  // MCU busy, then CPU_DONE
    void afterCpu();
    bool confirmable() const;
    void sendRequest();
    inet::Ptr<QesifHeader> header(int kind, long ackBytes) const;
    void send(int kind, long bytes, long ackBytes, bool confirmable);
    void requestPush(long downBytes);
    void armRetry();
    void retry();
    void finishExchange();

    inet::L3Address gatewayAddress_;
    std::vector<ScheduledMessage> schedule_;
    std::size_t nextArrival_ = 0;
    std::deque<ScheduledMessage> queue_;
    ScheduledMessage current_{};
    SessionCosts session_{};
    bool freshSession_ = false;
    bool needConnect_ = false;  // set by each fresh session (MQTT only)
    bool mqtt_ = true;
    Phase phase_ = IDLE;
    int step_ = 0;        // within HANDSHAKE: 0 before the up flight, 1 waiting, 2 after the down flight
    int attempt_ = 0;
    long seq_ = 0;        // the current exchange's number
    long exchanges_ = 0;
    double retryTimeoutS_ = 0;
    double cpuSeconds_ = 0;
    double radioEnergyJ_ = 0, lastPowerW_ = 0, lastPowerT_ = 0;
    omnetpp::cMessage *arrivalTimer_ = nullptr, *cpuTimer_ = nullptr, *retryTimer_ = nullptr;
};

}  // namespace qesif
