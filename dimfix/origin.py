"""Follow a layer's size argument to where its value is written (the stage's
entry; the resolver lives in dimfix/follow/)."""

from dimfix.follow.expansion import Binding, Expansion
from dimfix.follow.resolver import Resolver
from dimfix.follow.syntax import descendants

__all__ = ["Binding", "Expansion", "Resolver", "descendants"]
