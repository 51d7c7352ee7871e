"""Market making on the full-depth book: quote both sides inside the spread, sized by the depth.

    seqtrade run examples/market_maker.py --id mm1 [--param symbol=ETH-USDT] [--param size=0.01]

Each change of the book (``on_depth``) it reads ``self.book(symbol)``: the best bid and ask, and the
size resting within ``band`` of the mid on each side. It quotes a post-only bid and ask one tick inside
the spread (or at the touch when the spread is one tick), skewed away from the side with less depth and
against its own position, and moves a quote with ``amend_order`` only when it is off by more than
``tolerance`` ticks. When the server says the book is invalid or stale (``on_book_status``) it cancels
its quotes and waits for a valid book: it never quotes off a book it cannot trust.
"""

from __future__ import annotations

from seqtrade.client import BookStatus, LocalBook, OrderReport, Strategy, run


class MarketMaker(Strategy):
    symbols = ["BTC-USDT"]  # --param symbol=ETH-USDT replaces it
    book_depth = {"BTC-USDT": "full"}  # the whole book, kept from a snapshot and deltas

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self.book_depth = {self.symbol: "full"}  # follow --param symbol

    def on_start(self) -> None:
        self.size = float(self.params.get("size", 0.01))
        self.tick = float(self.params.get("tick", 0.1))
        self.band = float(self.params.get("band", 0.002))  # depth counted within 0.2 % of the mid
        self.max_position = float(self.params.get("max_position", 0.05))
        self.tolerance = int(self.params.get("tolerance", 2))
        self.quotes: dict[str, str | None] = {"buy": None, "sell": None}
        for coid, r in self.open_orders.items():  # after a restart: our quotes are still there
            if r.symbol == self.symbol:
                self.quotes[str(r.side)] = coid

    def depth_near_mid(self, book: LocalBook, mid: float) -> tuple[float, float]:
        """Size resting within ``band`` of the mid: (bids, asks)."""
        lo, hi = mid * (1 - self.band), mid * (1 + self.band)
        bid_depth = sum(size for price, size in book.bids if price >= lo)
        ask_depth = sum(size for price, size in book.asks if price <= hi)
        return bid_depth, ask_depth

    def on_depth(self, book: LocalBook) -> None:
        best_bid, best_ask, mid = book.best_bid, book.best_ask, book.mid
        if best_bid is None or best_ask is None or mid is None:
            return
        bid_depth, ask_depth = self.depth_near_mid(book, mid)
        imbalance = (bid_depth - ask_depth) / (bid_depth + ask_depth or 1.0)  # > 0: buyers lean in
        position = self.position(self.symbol)
        inside = self.tick if best_ask[0] - best_bid[0] > 2 * self.tick else 0.0
        skew = round(imbalance - position / self.max_position) * self.tick
        self.quote("buy", best_bid[0] + inside + skew, position < self.max_position)
        self.quote("sell", best_ask[0] - inside + skew, position > -self.max_position)

    def quote(self, side: str, price: float, wanted: bool) -> None:
        coid = self.quotes[side]
        live = self.open_orders.get(coid) if coid is not None else None
        if not wanted:
            if live is not None:
                self.cancel_order(live.client_order_id)
            return
        if live is None and coid is None:
            place = self.buy_limit if side == "buy" else self.sell_limit
            self.quotes[side] = place(self.symbol, price, self.size, order_type="post_only")
        elif live is not None and abs(live.price - price) > self.tolerance * self.tick:
            self.amend_order(live.client_order_id, price=price)

    def on_book_status(self, status: BookStatus) -> None:
        if status.state != "valid":
            self.log.warning("book %s %s (%s): pulling quotes", status.symbol, status.state, status.reason)
            for coid in list(self.open_orders):
                self.cancel_order(coid)

    def on_order(self, r: OrderReport) -> None:
        if r.error_msg:
            self.log.info("%s %s: %s", r.client_order_id, r.status, r.error_msg)
        if r.last_fill_quantity > 0:
            self.log.info("%s %s filled %g @ %.2f -> position %g", r.client_order_id, r.side,
                          r.last_fill_quantity, r.last_fill_price, self.position(r.symbol))  # fmt: skip
        if not r.is_open and self.quotes.get(str(r.side)) == r.client_order_id:
            self.quotes[str(r.side)] = None  # filled, cancelled or refused: quote again on the next change


if __name__ == "__main__":
    raise SystemExit(run(MarketMaker))
