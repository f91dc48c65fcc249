// A Cloudflare Queue consumer for the tests (tests/tests/lifecycle.rs): each batch of the
// change-feed messages the wado worker pushed to its FEED_QUEUE binding is POSTed to RECEIVER
// as a JSON array of the messages' bodies; a batch the receiver refuses is retried by the
// queue, as a real consumer's would be.
export default {
  async queue(batch, env) {
    const body = JSON.stringify(batch.messages.map((m) => m.body));
    let ok = false;
    try {
      const r = await fetch(env.RECEIVER, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
      });
      ok = r.ok;
    } catch (e) {
      ok = false;
    }
    if (ok) {
      batch.ackAll();
    } else {
      batch.retryAll();
    }
  },
};
