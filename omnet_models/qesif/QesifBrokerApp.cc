// The control centre's MQTT broker and CoAP server (see QesifBrokerApp.ned).
#include <algorithm>
#include <set>
#include <utility>

#include "QesifMessage_m.h"
#include "QesifUdpApp.h"
#include "inet/common/packet/Packet.h"
#include "inet/networklayer/common/L3AddressTag_m.h"
#include "inet/transportlayer/common/L4PortTag_m.h"

using namespace omnetpp;
using namespace inet;

namespace qesif {

class QesifBrokerApp : public QesifUdpApp
{
  protected:
    void handleMessageWhenUp(cMessage *msg) override
    {
        if (msg->isSelfMessage())
            serve(static_cast<Packet *>(msg->getContextPointer()), msg);
        else
            socket_.processMessage(msg);
    }
    // FIFO service, one request at a time.
    void socketDataArrived(UdpSocket *, Packet *packet) override
    {
        freeAt_ = std::max(freeAt_, simTime()) + par("serviceTime");
        auto job = new cMessage("serve");
        job->setContextPointer(packet);
        scheduleAt(freeAt_, job);
    }

  private:
    void serve(Packet *packet, cMessage *job)
    {
        delete job;
        auto header = packet->peekAtFront<QesifHeader>();
        int kind = header->getKind();
        int replyKind = kind == QESIF_CONNECT ? QESIF_CONNACK : kind == QESIF_PUBLISH ? QESIF_PUBACK : QESIF_COAP_ACK;
        if (kind == QESIF_PUBLISH || kind == QESIF_COAP_REQ) {
            // A retransmitted request is answered again but delivered once.
            if (delivered_.insert({header->getDevice(), header->getSeq()}).second)
                bridge_->countDelivered(simTime().dbl() - header->getCreated(), header->getPayloadBytes(),
                                        header->getConfirmable(), header->getDevice(), header->getSeq());
        }
        if (header->getConfirmable()) {
            auto reply = makeShared<QesifHeader>();
            reply->setKind(replyKind);
            reply->setDevice(header->getDevice());
            reply->setGateway(header->getGateway());
            reply->setSeq(header->getSeq());
            reply->setChunkLength(B(std::max(1, header->getAckBytes())));
            L3Address gateway = packet->getTag<L3AddressInd>()->getSrcAddress();
            int port = packet->getTag<L4PortInd>()->getSrcPort();
            socket_.sendTo(new Packet(cEnum::get("qesif::QesifKind")->getStringFor(replyKind), reply), gateway, port);
        }
        delete packet;
    }

    simtime_t freeAt_;
    std::set<std::pair<int, long>> delivered_;
};

Define_Module(QesifBrokerApp);

}  // namespace qesif
