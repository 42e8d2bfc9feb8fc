// What the QESIF applications share: INET's application lifecycle, one UDP socket bound to the
// `localPort` parameter, and the network's bridge (counters, session costs).
#pragma once

#include "QesifBridge.h"
#include "inet/applications/base/ApplicationBase.h"
#include "inet/transportlayer/contract/udp/UdpSocket.h"

namespace qesif {

class QesifUdpApp : public inet::ApplicationBase, public inet::UdpSocket::ICallback
{
  protected:
    int numInitStages() const override { return inet::NUM_INIT_STAGES; }
    void initialize(int stage) override
    {
        ApplicationBase::initialize(stage);
        if (stage == inet::INITSTAGE_LOCAL)
            bridge_ = QesifBridge::of(this);
    }
    void handleStartOperation(inet::LifecycleOperation *) override
    {
        socket_.setOutputGate(gate("socketOut"));
        socket_.setCallback(this);
        socket_.bind(par("localPort").intValue());
        started();
    }
    // After the socket is bound (addresses are assigned by then).
    virtual void started() {}
    void handleStopOperation(inet::LifecycleOperation *) override { socket_.close(); }
    void handleCrashOperation(inet::LifecycleOperation *) override { socket_.destroy(); }
    void socketErrorArrived(inet::UdpSocket *, inet::Indication *indication) override { delete indication; }
    void socketClosed(inet::UdpSocket *) override {}

    QesifBridge *bridge_ = nullptr;
    inet::UdpSocket socket_;
};

}  // namespace qesif
