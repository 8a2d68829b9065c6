"""Tokenizer: the llama2.c tokenizer.bin format or the SPM vocabulary embedded in GGUF."""

from ctypes import POINTER, byref, c_int32, c_size_t, c_void_p, create_string_buffer

from ._ffi import lib
from ._util import Handle, c_text, fspath_bytes, text_bytes
from .enums import Status
from .errors import check, fail

__all__ = ["Tokenizer"]


class Tokenizer(Handle):
    """A SentencePiece-style BPE vocabulary.

    ``Tokenizer(path, vocab_size=0)`` / ``Tokenizer.load(...)`` read a llama2.c tokenizer file
    (vocab_size 0 reads every record); ``Tokenizer.from_model(model)`` finds the tokenizer that
    goes with a model (embedded in GGUF, or tokenizer.bin / tok512.bin beside a llama2.c
    checkpoint). The C handle is independent of the model, so no reference to it is kept.

    Text in is str (encoded as UTF-8) or bytes; decode() returns str, decode_bytes() bytes."""

    _free_name = "qnpu_tokenizer_free"

    def __init__(self, path, vocab_size=0):
        h = c_void_p()
        check(lib.qnpu_tokenizer_load(fspath_bytes(path), int(vocab_size), byref(h)))
        self._adopt(h.value)

    @classmethod
    def load(cls, path, vocab_size=0):
        """Load a llama2.c tokenizer file (same as the constructor)."""
        return cls(path, vocab_size)

    @classmethod
    def from_model(cls, model):
        """The tokenizer of a Model; QnpuError(UNSUPPORTED) names where it looked if none."""
        h = c_void_p()
        check(lib.qnpu_tokenizer_from_model(model._handle(), byref(h)))
        tok = cls.__new__(cls)
        tok._adopt(h.value)
        return tok

    def _adopt(self, h):
        self._h = h
        self._vocab_size = lib.qnpu_tokenizer_vocab_size(h)
        self._bos = lib.qnpu_tokenizer_bos(h)
        self._eos = lib.qnpu_tokenizer_eos(h)
        self._decode_buf = create_string_buffer(256 + 1)

    @property
    def vocab_size(self):
        """Number of tokens in the vocabulary (also len(tokenizer))."""
        self._handle()
        return self._vocab_size

    def __len__(self):
        return self.vocab_size

    @property
    def bos(self):
        """BOS token id."""
        self._handle()
        return self._bos

    @property
    def eos(self):
        """EOS token id."""
        self._handle()
        return self._eos

    def encode(self, text, add_bos=True):
        """Token ids of `text` (str or bytes; NUL bytes are text too), BOS first with add_bos."""
        data = text_bytes(text)
        h = self._handle()
        # Most texts need far fewer ids than bytes; a too-small guess is retried with the size
        # the library reports (len + 2 always suffices).
        cap = len(data) // 2 + 8
        n = c_size_t()
        while True:
            ids = (c_int32 * cap)()
            st = lib.qnpu_tokenizer_encode(h, data, len(data), 1 if add_bos else 0, ids, cap,
                                           byref(n))
            if st == Status.BUFFER_TOO_SMALL:
                bigger = max(n.value, len(data) + 2)
                if bigger > cap:
                    cap = bigger
                    continue
            check(st)
            return ids[:n.value]

    def decode_token(self, prev, token):
        """The bytes of one token given the previous one (qnpu_tokenizer_decode): byte pieces
        become their byte, and the leading space is dropped right after BOS."""
        h = self._handle()
        buf = self._decode_buf
        n = c_size_t()
        while True:
            cap = len(buf) - 1  # the library writes at most cap bytes plus a NUL
            st = lib.qnpu_tokenizer_decode(h, int(prev), int(token), buf, cap, byref(n))
            if st == Status.BUFFER_TOO_SMALL:
                buf = create_string_buffer(max(n.value + 1, 2 * cap) + 1)
                self._decode_buf = buf
                continue
            check(st)
            return buf.raw[:n.value]

    def decode_bytes(self, ids, prev=None, skip_special=True):
        """Concatenate the decoded tokens, each decoded with its predecessor (the first with
        `prev`, BOS by default, so the dummy-prefix space of encoded text is dropped). With
        skip_special, BOS and EOS produce no bytes (they still act as predecessors)."""
        self._handle()
        prev = self._bos if prev is None else int(prev)
        special = (self._bos, self._eos) if skip_special else ()
        out = bytearray()
        for token in ids:
            token = int(token)
            if token not in special:
                out += self.decode_token(prev, token)
            prev = token
        return bytes(out)

    def decode(self, ids, prev=None, skip_special=True, errors="replace"):
        """decode_bytes() as str (UTF-8; invalid sequences handled per `errors`)."""
        return self.decode_bytes(ids, prev, skip_special).decode("utf-8", errors=errors)

    def piece_bytes(self, token):
        """The raw piece of a token (qnpu_tokenizer_piece) as bytes."""
        p = lib.qnpu_tokenizer_piece(self._handle(), int(token))
        if p is None:
            fail(Status.INVALID_ARG,
                 f"token id {int(token)} is outside the vocabulary of {self._vocab_size}")
        return p

    def piece(self, token):
        """The raw piece of a token as str (e.g. " Once", "<0x0A>")."""
        return c_text(self.piece_bytes(token))

    def tokenize_paragraphs(self, text):
        """Token ids by the perplexity protocol (qnpu_tokenize_paragraphs): paragraphs split on
        blank lines, each [BOS] + encode(paragraph), concatenated."""
        data = text_bytes(text)
        ptr, n = POINTER(c_int32)(), c_size_t()
        check(lib.qnpu_tokenize_paragraphs(self._handle(), data, len(data), byref(ptr), byref(n)))
        try:
            return ptr[:n.value] if n.value else []
        finally:
            lib.qnpu_free(ptr)

    def __repr__(self):
        if self.closed:
            return "<quantnpu.Tokenizer closed>"
        return f"<quantnpu.Tokenizer vocab={self._vocab_size} bos={self._bos} eos={self._eos}>"
