// An IoT device's application: the exchanges of qesif_core.network.model, in INET (see QesifDeviceApp.ned).
#include "QesifDeviceApp.h"

#include <algorithm>
#include <cmath>

#include "inet/common/ModuleAccess.h"
#include "inet/common/packet/Packet.h"
#include "inet/networklayer/common/L3AddressResolver.h"
#include "inet/power/contract/IEpEnergyConsumer.h"

using namespace omnetpp;
using namespace inet;

namespace qesif {

Define_Module(QesifDeviceApp);

QesifDeviceApp::~QesifDeviceApp()
{
    cancelAndDelete(arrivalTimer_);
    cancelAndDelete(cpuTimer_);
    cancelAndDelete(retryTimer_);
}

void QesifDeviceApp::initialize(int stage)
{
    QesifUdpApp::initialize(stage);
    if (stage == INITSTAGE_LOCAL) {
        arrivalTimer_ = new cMessage("arrival", ARRIVAL);
        cpuTimer_ = new cMessage("cpu", CPU_DONE);
        retryTimer_ = new cMessage("retry", RETRY);
        std::string protocol = par("protocol").stdstringValue();
        if (protocol != "mqtt" && protocol != "coap")
            throw cRuntimeError("protocol must be mqtt or coap, got '%s'", protocol.c_str());
        mqtt_ = protocol == "mqtt";
        getContainingNode(this)->subscribe(power::IEpEnergyConsumer::powerConsumptionChangedSignal, this);
    }
}

void QesifDeviceApp::started()
{
    std::string gateway = "gateway[" + std::to_string(par("gateway").intValue()) + "]%wlan0";
    gatewayAddress_ = L3AddressResolver().resolve(gateway.c_str());
    if (!schedule_.empty())
        scheduleAt(std::max(simTime(), SimTime(schedule_[0].time)), arrivalTimer_);
}

void QesifDeviceApp::receiveSignal(cComponent *, simsignal_t, double value, cObject *)
{
    double now = simTime().dbl();
    radioEnergyJ_ += lastPowerW_ * (now - lastPowerT_);
    lastPowerW_ = value;
    lastPowerT_ = now;
}

double QesifDeviceApp::takeRoundEnergy(double roundDurationS)
{
    double now = simTime().dbl();
    radioEnergyJ_ += lastPowerW_ * (now - lastPowerT_);
    lastPowerT_ = now;
    double volts = par("supplyVoltage").doubleValue();
    double active = std::min(cpuSeconds_, roundDurationS);
    double mcu = volts * (active * par("mcuActiveCurrent").doubleValue() +
                          (roundDurationS - active) * par("mcuSleepCurrent").doubleValue());
    double energy = radioEnergyJ_ + mcu;
    radioEnergyJ_ = 0;
    cpuSeconds_ -= active;  // CPU work spilling past the round end counts in the next round
    return energy;
}

// A request the broker already counted but whose ACK is still awaited is delivered, not in flight.
long QesifDeviceApp::inFlight() const
{
    bool underWay = phase_ == MESSAGE && !bridge_->delivered(par("deviceIndex").intValue(), seq_);
    return (long)queue_.size() + (underWay ? 1 : 0);
}

void QesifDeviceApp::startSession(const SessionCosts& costs)
{
    session_ = costs;
    freshSession_ = true;
}

void QesifDeviceApp::handleMessageWhenUp(cMessage *msg)
{
    if (msg == arrivalTimer_)
        arrive();
    else if (msg == cpuTimer_)
        afterCpu();
    else if (msg == retryTimer_)
        retry();
    else
        socket_.processMessage(msg);
}

void QesifDeviceApp::arrive()
{
    const ScheduledMessage& message = schedule_[nextArrival_++];
    if (nextArrival_ < schedule_.size())
        scheduleAt(SimTime(schedule_[nextArrival_].time), arrivalTimer_);
    bridge_->countSent();
    if (busy()) {
        if ((int)queue_.size() >= par("queueLimit").intValue())
            bridge_->countQueueDrop();
        else
            queue_.push_back(message);
        return;
    }
    queue_.push_back(message);
    startNext();
}

void QesifDeviceApp::compute(double seconds)
{
    cpuSeconds_ += seconds;
    scheduleAfter(SimTime(seconds), cpuTimer_);
}

// The next exchange: a fresh session's handshake, then (MQTT) its CONNECT, then the queued messages.
void QesifDeviceApp::startNext()
{
    attempt_ = 0;
    if (freshSession_) {
        freshSession_ = false;
        needConnect_ = mqtt_;
        if (session_.handshakeUpBytes > 0 || session_.handshakeDownBytes > 0) {
            phase_ = HANDSHAKE;
            step_ = 0;
            seq_ = ++exchanges_;
            // The device's share of the handshake work before its flight (half, as the built-in model).
            compute(session_.handshakeUpBytes > 0 ? 0.5 * session_.handshakeDeviceS : 0.0);
            return;
        }
    }
    double stack = par("stackSeconds").doubleValue();
    if (needConnect_) {
        phase_ = CONNECT;
        seq_ = ++exchanges_;
        compute(stack);
        return;
    }
    if (queue_.empty()) {
        phase_ = IDLE;
        return;
    }
    phase_ = MESSAGE;
    current_ = queue_.front();
    queue_.pop_front();
    seq_ = ++exchanges_;
    long overhead = mqtt_ ? par("mqttPublishOverhead").intValue() : par("coapRequestOverhead").intValue();
    long blocks = (current_.payload + overhead + 15) / 16;
    compute(stack + session_.cipherDeviceSFixed + session_.cipherDeviceSPerBlock * blocks);
}

void QesifDeviceApp::afterCpu()
{
    switch (phase_) {
        case HANDSHAKE:
            if (step_ == 0) {
                step_ = 1;
                sendRequest();
                if (session_.handshakeDownBytes > 0) {
                    retryTimeoutS_ = par("dtlsInitialTimeout").doubleValue();
                    armRetry();
                    return;
                }
                step_ = 2;
                compute(session_.handshakeDeviceS - 0.5 * session_.handshakeDeviceS);
                return;
            }
            startNext();  // step 2: the device's work after the down flight is done
            return;
        case CONNECT:
            sendRequest();
            retryTimeoutS_ = par("mqttRetry").doubleValue();
            armRetry();
            return;
        case MESSAGE:
            sendRequest();
            if (!confirmable()) {
                bridge_->countUnconfirmedSent();
                startNext();
                return;
            }
            retryTimeoutS_ = mqtt_ ? par("mqttRetry").doubleValue()
                                   : par("coapAckTimeout").doubleValue() * uniform(1.0, par("coapAckRandomFactor").doubleValue());
            armRetry();
            return;
        case IDLE:
            throw cRuntimeError("CPU work finished while idle");
    }
}

bool QesifDeviceApp::confirmable() const
{
    return mqtt_ ? par("mqttQos").intValue() >= 1 : par("coapConfirmable").boolValue();
}

// The current exchange's request (first attempt or retransmission), with its reply's size.
void QesifDeviceApp::sendRequest()
{
    long extra = session_.extraBytes;
    if (phase_ == HANDSHAKE) {
        long record = par("handshakeRecordOverhead").intValue();
        long down = session_.handshakeDownBytes > 0 ? session_.handshakeDownBytes + record : 0;
        if (session_.handshakeUpBytes == 0) {
            requestPush(down);  // only a gateway flight: the gateway starts (or repeats) it
            return;
        }
        send(QESIF_HS_UP, session_.handshakeUpBytes + record, down, down > 0);
    }
    else if (phase_ == CONNECT)
        send(QESIF_CONNECT, par("mqttConnect").intValue() + extra, par("mqttConnack").intValue() + extra, true);
    else {
        long overhead = mqtt_ ? par("mqttPublishOverhead").intValue() : par("coapRequestOverhead").intValue();
        long ack = mqtt_ ? par("mqttPuback").intValue() : par("coapAck").intValue();
        send(mqtt_ ? QESIF_PUBLISH : QESIF_COAP_REQ, current_.payload + overhead + extra, ack + extra, confirmable());
    }
}

Ptr<QesifHeader> QesifDeviceApp::header(int kind, long ackBytes) const
{
    auto header = makeShared<QesifHeader>();
    header->setKind(kind);
    header->setDevice(par("deviceIndex").intValue());
    header->setGateway(par("gateway").intValue());
    header->setSeq(seq_);
    header->setAckBytes(ackBytes);
    return header;
}

void QesifDeviceApp::send(int kind, long bytes, long ackBytes, bool confirmable)
{
    auto chunk = header(kind, ackBytes);
    chunk->setConfirmable(confirmable);
    chunk->setCreated(phase_ == MESSAGE ? current_.time : simTime().dbl());
    chunk->setPayloadBytes(phase_ == MESSAGE ? current_.payload : 0);
    chunk->setChunkLength(B(std::max(1L, bytes)));
    auto packet = new Packet(cEnum::get("qesif::QesifKind")->getStringFor(kind), chunk);
    socket_.sendTo(packet, gatewayAddress_, par("gatewayPort").intValue());
}

// The gateway's request reaches it directly (no frame): see QesifGatewayApp::pushFlight.
void QesifDeviceApp::requestPush(long downBytes)
{
    auto chunk = header(QESIF_HS_UP, downBytes);
    chunk->setChunkLength(B(1));
    std::string path = ".gateway[" + std::to_string(par("gateway").intValue()) + "].app[0]";
    cModule *gatewayApp = getSimulation()->getSystemModule()->getModuleByPath(path.c_str());
    sendDirect(new Packet("push-request", chunk), gatewayApp, "pushIn");
}

void QesifDeviceApp::armRetry() { scheduleAfter(SimTime(retryTimeoutS_), retryTimer_); }

// A confirmable exchange's timer fired: send again (CoAP and DTLS double the timeout) or give up.
void QesifDeviceApp::retry()
{
    int limit = phase_ == HANDSHAKE ? par("dtlsMaxRetransmit").intValue()
              : (mqtt_ ? par("mqttMaxRetries").intValue() : par("coapMaxRetransmit").intValue());
    if (attempt_ >= limit) {
        if (phase_ == MESSAGE)
            bridge_->countLost(par("deviceIndex").intValue(), seq_);
        finishExchange();
        return;
    }
    attempt_++;
    bridge_->countRetransmission();
    cpuSeconds_ += par("stackSeconds").doubleValue();
    if (phase_ == HANDSHAKE || !mqtt_)
        retryTimeoutS_ *= 2;
    sendRequest();
    armRetry();
}

// The exchange is over (answered or given up): the next one, after the handshake's closing work.
void QesifDeviceApp::finishExchange()
{
    cancelEvent(retryTimer_);
    if (phase_ == CONNECT)
        needConnect_ = false;
    if (phase_ == HANDSHAKE) {
        step_ = 2;
        compute(session_.handshakeDeviceS - (session_.handshakeUpBytes > 0 ? 0.5 * session_.handshakeDeviceS : 0.0));
        return;
    }
    startNext();
}

void QesifDeviceApp::socketDataArrived(UdpSocket *, Packet *packet)
{
    auto header = packet->peekAtFront<QesifHeader>();
    int kind = header->getKind();
    bool answers = header->getSeq() == seq_ && retryTimer_->isScheduled() &&
                   ((phase_ == HANDSHAKE && kind == QESIF_HS_DOWN) || (phase_ == CONNECT && kind == QESIF_CONNACK) ||
                    (phase_ == MESSAGE && (kind == QESIF_PUBACK || kind == QESIF_COAP_ACK)));
    delete packet;
    if (answers)  // a late reply to an exchange already answered or given up is ignored
        finishExchange();
}

}  // namespace qesif
