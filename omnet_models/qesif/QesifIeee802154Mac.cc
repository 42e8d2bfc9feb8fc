#include "QesifIeee802154Mac.h"

namespace qesif {

Define_Module(QesifIeee802154Mac);

void QesifIeee802154Mac::handleSelfMessage(omnetpp::cMessage *msg)
{
    using inet::physicallayer::IRadio;
    // The busy CCA that ends CSMA-CA of a frame not yet transmitted: take the frame from the queue as the
    // base class does for a clear channel, so that its channel-access-failure branch drops it (CONGESTION).
    if (msg == ccaTimer && macState == CCA_3 && currentTxFrame == nullptr && NB + 1 > macMaxCSMABackoffs &&
        radio->getReceptionState() != IRadio::RECEPTION_STATE_IDLE && !txQueue->isEmpty())
    {
        currentTxFrame = dequeuePacket();
        encapsulate(currentTxFrame);
    }
    inet::Ieee802154Mac::handleSelfMessage(msg);
}

}  // namespace qesif
