// A gateway's application (see QesifGatewayApp.ned): handshake responder and MQTT-SN/CoAP relay.
#include <algorithm>
#include <map>

#include "QesifMessage_m.h"
#include "QesifUdpApp.h"
#include "inet/common/packet/Packet.h"
#include "inet/networklayer/common/L3AddressResolver.h"
#include "inet/networklayer/common/L3AddressTag_m.h"
#include "inet/transportlayer/common/L4PortTag_m.h"

using namespace omnetpp;
using namespace inet;

namespace qesif {

class QesifGatewayApp : public QesifUdpApp
{
  protected:
    void started() override
    {
        // The control centre's interface on this gateway's own backhaul link (no routes needed).
        std::string broker = par("brokerAddress").stdstringValue();
        if (broker.empty())
            broker = "controlCentre%eth" + std::to_string(par("gatewayIndex").intValue());
        broker_ = L3AddressResolver().resolve(broker.c_str());
    }
    void handleMessageWhenUp(cMessage *msg) override
    {
        if (msg->getArrivalGate() == gate("pushIn")) {
            pushFlight(check_and_cast<Packet *>(msg));
            return;
        }
        if (!msg->isSelfMessage()) {
            socket_.processMessage(msg);
            return;
        }
        // The CPU finished a job: send its packet on.
        auto packet = static_cast<Packet *>(msg->getContextPointer());
        auto header = packet->peekAtFront<QesifHeader>();
        int device = header->getDevice();
        if (msg->getKind() == TO_BROKER)
            socket_.sendTo(packet, broker_, par("brokerPort").intValue());
        else
            socket_.sendTo(packet, deviceAddress_.at(device), localPortOf_.at(device));
        delete msg;
    }
    void socketDataArrived(UdpSocket *, Packet *packet) override
    {
        auto header = packet->peekAtFront<QesifHeader>();
        int kind = header->getKind();
        int device = header->getDevice();
        const SessionCosts& costs = bridge_->costsOf(device);
        double forward = par("forwardSeconds").doubleValue();
        long appBytes = B(header->getChunkLength()).get() - costs.extraBytes;
        if (kind == QESIF_HS_UP || kind == QESIF_CONNECT || kind == QESIF_PUBLISH || kind == QESIF_COAP_REQ) {
            deviceAddress_[device] = packet->getTag<L3AddressInd>()->getSrcAddress();
            localPortOf_[device] = packet->getTag<L4PortInd>()->getSrcPort();
        }
        if (kind == QESIF_HS_UP) {
            // The gateway's handshake work, then its flight (if the handshake has one).
            long reply = header->getAckBytes();
            double work = costs.handshakeGatewayS;
            delete packet;
            if (reply > 0)
                schedule(work, makeReply(device, QESIF_HS_DOWN, header->getSeq(), reply), TO_DEVICE);
            else
                cpuFreeAt_ = std::max(cpuFreeAt_, simTime()) + SimTime(work);
            return;
        }
        bool data = kind == QESIF_PUBLISH || kind == QESIF_COAP_REQ || kind == QESIF_PUBACK || kind == QESIF_COAP_ACK;
        double work = forward + (data ? costs.cipherGatewaySFixed + costs.cipherGatewaySPerByte * appBytes : 0.0);
        auto copy = new Packet(packet->getName(), packet->peekAtFront<QesifHeader>());
        bool up = kind == QESIF_CONNECT || kind == QESIF_PUBLISH || kind == QESIF_COAP_REQ;
        delete packet;
        schedule(work, copy, up ? TO_BROKER : TO_DEVICE);
    }

  private:
    enum Direction { TO_BROKER = 1, TO_DEVICE };

    // A handshake with only a gateway -> device flight (QKD-PSK: the key ID travels down): the gateway
    // holds the device's grant, so it starts the flight itself when the device's session starts, with
    // no device message on the air (the device's request reaches it directly, taking no time).
    void pushFlight(Packet *request)
    {
        auto header = request->peekAtFront<QesifHeader>();
        int device = header->getDevice();
        if (deviceAddress_.count(device) == 0) {
            std::string node = "device[" + std::to_string(device) + "]";
            deviceAddress_[device] = L3AddressResolver().resolve((node + "%wlan0").c_str());
            cModule *app = getSimulation()->getSystemModule()->getModuleByPath(("." + node + ".app[0]").c_str());
            localPortOf_[device] = app->par("localPort").intValue();
        }
        Packet *flight = makeReply(device, QESIF_HS_DOWN, header->getSeq(), header->getAckBytes());
        delete request;
        schedule(bridge_->costsOf(device).handshakeGatewayS, flight, TO_DEVICE);
    }

    Packet *makeReply(int device, int kind, long seq, long bytes)
    {
        auto header = makeShared<QesifHeader>();
        header->setKind(kind);
        header->setDevice(device);
        header->setSeq(seq);
        header->setChunkLength(B(bytes));
        return new Packet(cEnum::get("qesif::QesifKind")->getStringFor(kind), header);
    }
    // One FIFO core serves the per-message path.
    void schedule(double work, Packet *packet, Direction direction)
    {
        cpuFreeAt_ = std::max(cpuFreeAt_, simTime()) + SimTime(work);
        auto job = new cMessage("cpu", direction);
        job->setContextPointer(packet);
        scheduleAt(cpuFreeAt_, job);
    }

    L3Address broker_;
    std::map<int, L3Address> deviceAddress_;
    std::map<int, int> localPortOf_;
    simtime_t cpuFreeAt_;
};

Define_Module(QesifGatewayApp);

}  // namespace qesif
