"""darknb's BERT head against a transcription of LateTemporalModeling3DCNN's BERT5.

The reference below is transcribed from artest08/LateTemporalModeling3DCNN (models/BERT/:
bert.py ``BERT5``, transformer.py ``TransformerBlock``, attention/multi_head.py, attention/single.py,
embedding/bert.py ``BERTEmbedding2``, embedding/position.py ``LearnedPositionalEmbedding2``,
utils/sublayer.py, utils/feed_forward.py, utils/gelu.py, utils/layer_norm.py) with ``.cuda()``
removed and one change to ``BERT5.forward``: the Bernoulli key-mask ``sample`` may be passed in,
so both implementations can be run with the same mask. Two switches put darknb's deliberate
differences (exact GELU, torch's LayerNorm) into the reference to show that everything else is
equal; with BERT5's own forms the outputs differ by a bounded amount.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from darknb.models.classifiers import BERTTemporalHead
from darknb.models.classifiers import _Block as Block

# ------------------------------------------------------------------ the transcription (BERT5)


class GELU(nn.Module):
    exact = False  # darknb's form when True

    def forward(self, x):
        if self.exact:
            return F.gelu(x)
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


class LayerNorm(nn.Module):
    torch_form = False  # darknb's nn.LayerNorm when True

    def __init__(self, features, eps=1e-6):
        super().__init__()
        self.a_2 = nn.Parameter(torch.ones(features))
        self.b_2 = nn.Parameter(torch.zeros(features))
        self.eps = eps

    def forward(self, x):
        if self.torch_form:
            return F.layer_norm(x, x.shape[-1:], self.a_2, self.b_2, eps=1e-5)
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        return self.a_2 * (x - mean) / (std + self.eps) + self.b_2


class Attention(nn.Module):
    def forward(self, query, key, value, mask=None, dropout=None):
        scores = torch.matmul(query, key.transpose(-2, -1)) / math.sqrt(query.size(-1))
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e9)
        p_attn = F.softmax(scores, dim=-1)
        if dropout is not None:
            p_attn = dropout(p_attn)
        return torch.matmul(p_attn, value), p_attn


class MultiHeadedAttention(nn.Module):
    def __init__(self, h, d_model, dropout=0.1):
        super().__init__()
        assert d_model % h == 0
        self.d_k = d_model // h
        self.h = h
        self.linear_layers = nn.ModuleList([nn.Linear(d_model, d_model) for _ in range(3)])
        self.output_linear = nn.Linear(d_model, d_model)
        self.attention = Attention()
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, query, key, value, mask=None):
        batch_size = query.size(0)
        query, key, value = [lin(x).view(batch_size, -1, self.h, self.d_k).transpose(1, 2)
                             for lin, x in zip(self.linear_layers, (query, key, value))]
        x, attn = self.attention(query, key, value, mask=mask, dropout=self.dropout)
        x = x.transpose(1, 2).contiguous().view(batch_size, -1, self.h * self.d_k)
        return self.output_linear(x)


class PositionwiseFeedForward(nn.Module):
    def __init__(self, d_model, d_ff, dropout=0.1):
        super().__init__()
        self.w_1 = nn.Linear(d_model, d_ff)
        self.w_2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)
        self.activation = GELU()

    def forward(self, x):
        return self.w_2(self.dropout(self.activation(self.w_1(x))))


class SublayerConnection(nn.Module):
    def __init__(self, size, dropout):
        super().__init__()
        self.norm = LayerNorm(size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, sublayer):
        return x + self.dropout(sublayer(self.norm(x)))


class TransformerBlock(nn.Module):
    def __init__(self, hidden, attn_heads, feed_forward_hidden, dropout):
        super().__init__()
        self.attention = MultiHeadedAttention(h=attn_heads, d_model=hidden)
        self.feed_forward = PositionwiseFeedForward(d_model=hidden, d_ff=feed_forward_hidden, dropout=dropout)
        self.input_sublayer = SublayerConnection(size=hidden, dropout=dropout)
        self.output_sublayer = SublayerConnection(size=hidden, dropout=dropout)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x, mask):
        x = self.input_sublayer(x, lambda _x: self.attention.forward(_x, _x, _x, mask=mask))
        x = self.output_sublayer(x, self.feed_forward)
        return self.dropout(x)


class LearnedPositionalEmbedding2(nn.Module):
    def __init__(self, d_model, max_len=512):
        super().__init__()
        pe = torch.zeros(max_len, d_model).float()
        pe = pe.unsqueeze(0)
        self.pe = nn.Parameter(pe)
        torch.nn.init.normal_(self.pe, std=0.02)

    def forward(self, x):
        return self.pe[:, :x.size(1)]


class BERTEmbedding2(nn.Module):
    def __init__(self, input_dim, max_len, dropout=0.1):
        super().__init__()
        self.learnedPosition = LearnedPositionalEmbedding2(d_model=input_dim, max_len=max_len)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, sequence):
        x = self.learnedPosition(sequence) + sequence
        return self.dropout(x)


class BERT5(nn.Module):
    def __init__(self, input_dim, max_len, hidden=768, n_layers=12, attn_heads=12, dropout=0.1, mask_prob=0.8):
        super().__init__()
        self.hidden = hidden
        self.n_layers = n_layers
        self.attn_heads = attn_heads
        self.max_len = max_len
        self.input_dim = input_dim
        self.mask_prob = mask_prob
        clsToken = torch.zeros(1, 1, self.input_dim).float()
        self.clsToken = nn.Parameter(clsToken)
        torch.nn.init.normal_(clsToken, std=0.02)
        self.feed_forward_hidden = hidden * 4
        self.embedding = BERTEmbedding2(input_dim=input_dim, max_len=max_len + 1)
        self.transformer_blocks = nn.ModuleList(
            [TransformerBlock(hidden, attn_heads, self.feed_forward_hidden, dropout) for _ in range(n_layers)])

    def forward(self, input_vectors, sample=None):  # ``sample``: the only addition (see module doc)
        batch_size = input_vectors.shape[0]
        if self.training:
            if sample is None:
                bernolliMatrix = torch.cat((torch.tensor([1]).float(), (torch.tensor([self.mask_prob]).float()).repeat(self.max_len)), 0).unsqueeze(0).repeat([batch_size, 1])  # noqa: E501
                self.bernolliDistributor = torch.distributions.Bernoulli(bernolliMatrix)
                sample = self.bernolliDistributor.sample()
            mask = (sample > 0).unsqueeze(1).repeat(1, sample.size(1), 1).unsqueeze(1)
        else:
            mask = torch.ones(batch_size, 1, self.max_len + 1, self.max_len + 1)
        x = torch.cat((self.clsToken.repeat(batch_size, 1, 1), input_vectors), 1)
        x = self.embedding(x)
        for transformer in self.transformer_blocks:
            x = transformer.forward(x, mask)
        return x, sample


# ------------------------------------------------------------------ helpers


def reference_of(head: BERTTemporalHead, *, darknb_forms: bool) -> BERT5:
    """A BERT5 holding ``head``'s weights (its q, k, v are one fused Linear here)."""
    D = head.cls_token.shape[-1]
    ref = BERT5(D, head.num_frames, hidden=D, n_layers=len(head.blocks),
                attn_heads=head.blocks[0].attn.num_heads, mask_prob=head.mask_keep_prob)
    with torch.no_grad():
        ref.clsToken.copy_(head.cls_token)
        ref.embedding.learnedPosition.pe.copy_(head.pos_embed)
        for ours, theirs in zip(head.blocks, ref.transformer_blocks):
            for lin, w, b in zip(theirs.attention.linear_layers, ours.attn.qkv.weight.chunk(3),
                                 ours.attn.qkv.bias.chunk(3)):
                lin.weight.copy_(w)
                lin.bias.copy_(b)
            theirs.attention.output_linear.load_state_dict(ours.attn.proj.state_dict())
            theirs.feed_forward.w_1.load_state_dict(ours.ffn[0].state_dict())
            theirs.feed_forward.w_2.load_state_dict(ours.ffn[3].state_dict())
            for norm, sub in ((ours.norm1, theirs.input_sublayer), (ours.norm2, theirs.output_sublayer)):
                sub.norm.a_2.copy_(norm.weight)
                sub.norm.b_2.copy_(norm.bias)
    for m in ref.modules():
        if isinstance(m, GELU):
            m.exact = darknb_forms
        if isinstance(m, LayerNorm):
            m.torch_form = darknb_forms
    return ref


def trained_like(head: BERTTemporalHead) -> BERTTemporalHead:
    """Move the norms off their (1, 0) init so the comparison also checks their weights."""
    torch.manual_seed(7)
    with torch.no_grad():
        for block in head.blocks:
            for norm in (block.norm1, block.norm2):
                norm.weight.add_(0.1 * torch.randn_like(norm.weight))
                norm.bias.add_(0.1 * torch.randn_like(norm.bias))
    return head


def capture_key_mask(head: BERTTemporalHead) -> list:
    """The key mask each block receives (a forward pre-hook: no change to the head)."""
    seen = []
    head.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[1]))
    return seen


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("depth", [1, 2])
def test_eval_outputs_equal_bert5(depth):
    torch.manual_seed(0)
    head = trained_like(BERTTemporalHead(64, 5, num_frames=8, depth=depth, num_heads=8)).eval()
    ref = reference_of(head, darknb_forms=True).eval()
    x = torch.randn(3, 8, 64)
    ours = head.forward_features(x)
    theirs, _ = ref(x)
    torch.testing.assert_close(ours, theirs[:, 0], atol=1e-5, rtol=1e-5)
    # the classifier on CLS (rgb_r2plus1d_64f_34_bert10: fc_action(dp(output[:, 0, :])))
    torch.testing.assert_close(head(x), head.fc(theirs[:, 0]), atol=1e-5, rtol=1e-5)


def test_train_outputs_equal_bert5_given_the_same_key_mask_and_no_dropout():
    torch.manual_seed(0)
    head = trained_like(BERTTemporalHead(64, 5, num_frames=8, depth=2, num_heads=8, dropout=0.0,
                                         mask_keep_prob=0.5, head_dropout=0.0)).train()
    ref = reference_of(head, darknb_forms=True).train()
    for m in ref.modules():  # BERT5's attention dropout is fixed at 0.1: switch it off too
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    masks = capture_key_mask(head)
    x = torch.randn(4, 8, 64)
    torch.manual_seed(3)
    ours = head.forward_features(x)
    key_mask = masks[-1]
    assert key_mask is not None and key_mask[:, 0].all() and not key_mask.all()  # something masked
    theirs, _ = ref(x, sample=key_mask.float())
    torch.testing.assert_close(ours, theirs[:, 0], atol=1e-5, rtol=1e-5)
    # the mask matters: without it the reference gives another output
    unmasked, _ = ref(x, sample=torch.ones_like(key_mask, dtype=torch.float))
    assert not torch.allclose(ours, unmasked[:, 0], atol=1e-3)


def test_bert5s_own_gelu_and_layernorm_change_outputs_by_under_one_percent():
    """The documented deliberate differences, at the R(2+1)D-BERT width (512)."""
    torch.manual_seed(0)
    head = BERTTemporalHead(512, 5, num_frames=8, num_heads=8).eval()
    x = torch.randn(2, 8, 512)
    ours = head.forward_features(x)
    theirs = reference_of(head, darknb_forms=False).eval()(x)[0][:, 0]
    rel = ((ours - theirs).norm() / theirs.norm()).item()
    assert 0 < rel < 0.01, rel


def test_block_ends_with_a_dropout_as_bert5():
    torch.manual_seed(0)
    block = Block(32, 4, 4.0, dropout=0.5).train()
    out = block(torch.randn(4, 9, 32), None)
    # a residual sum is never exactly 0; only the final dropout zeroes about half of the outputs
    zeros = (out == 0).float().mean().item()
    assert 0.4 < zeros < 0.6, zeros
    assert not (block.eval()(torch.randn(4, 9, 32), None) == 0).any()


def test_darklight_two_stream_heads_never_mask_keys():
    from darknb.models.classifiers import create_model

    model = create_model("two_stream_bert_tiny", 3).train()
    assert model.head.mask_keep_prob == 1.0
    masks = capture_key_mask(model.head)
    model(torch.rand(2, 3, 8, 32, 32))
    assert masks == [None]
    with torch.device("meta"):  # the paper-size models: BERT5's key mask in the student only
        assert create_model("vit_bert", 3).head.mask_keep_prob == 0.8
        assert create_model("two_stream_bert", 3).head.mask_keep_prob == 1.0
