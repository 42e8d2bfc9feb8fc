// INET's IEEE 802.15.4 MAC with the standard's channel access failure (IEEE Std 802.15.4-2006 7.5.1.4):
// when CSMA-CA finds the channel busy more than macMaxCSMABackoffs times, the frame is dropped. INET 4.5.4's
// Ieee802154Mac drops it only if it was transmitted before (a retry after a missing ACK); a frame not yet
// transmitted stays queued and CSMA-CA starts over with NB = 0 ("too many Backoffs, but currentTxFrame is
// empty"), so its frames never fail channel access. Everything else is INET's.
#pragma once

#include "inet/linklayer/ieee802154/Ieee802154Mac.h"

namespace qesif {

class QesifIeee802154Mac : public inet::Ieee802154Mac
{
  protected:
    void handleSelfMessage(omnetpp::cMessage *msg) override;
};

}  // namespace qesif
