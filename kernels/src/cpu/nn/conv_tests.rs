//! Convolution tests: Conv2D and DepthwiseConv2dNative against a naive reference (SAME
//! with odd padding, VALID, EXPLICIT, strides, dilations, groups, 1x1), NCHW against NHWC,
//! and the gradients through the adjoint identity <conv(x, f), dy> = <x, dx> = <f, dw>.

use rill_graph::{AttrValue, Code};

use super::tests::{dot, ints, nhwc_to_nchw, s};
use crate::cpu::math::test_util::{assert_close, f32s, i32s, random, run, run1};

/// A convolution case: NHWC input dims, HWIO filter dims, strides, dilations, padding.
struct Case {
    x: [usize; 4],
    f: [usize; 4],
    stride: [usize; 2],
    dil: [usize; 2],
    pad: &'static str,
    explicit: [usize; 4],
}

impl Case {
    fn attrs(&self, format: &str) -> Vec<(&'static str, AttrValue)> {
        let [sh, sw] = self.stride.map(|v| v as i64);
        let [dh, dw] = self.dil.map(|v| v as i64);
        let [pt, pb, pl, pr] = self.explicit.map(|v| v as i64);
        let (strides, dilations, explicit) = if format == "NHWC" {
            (
                vec![1, sh, sw, 1],
                vec![1, dh, dw, 1],
                vec![0, 0, pt, pb, pl, pr, 0, 0],
            )
        } else {
            (
                vec![1, 1, sh, sw],
                vec![1, 1, dh, dw],
                vec![0, 0, 0, 0, pt, pb, pl, pr],
            )
        };
        let mut a = vec![
            ("strides", ints(&strides)),
            ("dilations", ints(&dilations)),
            ("padding", s(self.pad)),
            ("data_format", s(format)),
        ];
        if self.pad == "EXPLICIT" {
            a.push(("explicit_paddings", ints(&explicit)));
        }
        a
    }

    /// (output size, leading pad) per spatial dim, computed independently of the kernels.
    fn geometry(&self) -> [(usize, usize); 2] {
        [0, 1].map(|i| {
            let (n, k, st, d) = (
                self.x[1 + i] as i64,
                self.f[i] as i64,
                self.stride[i] as i64,
                self.dil[i] as i64,
            );
            let eff = (k - 1) * d + 1;
            match self.pad {
                "VALID" => (((n - eff) / st + 1) as usize, 0),
                "SAME" => {
                    let out = (n + st - 1) / st;
                    (
                        out as usize,
                        (((out - 1) * st + eff - n).max(0) / 2) as usize,
                    )
                }
                _ => {
                    let (b, a) = (self.explicit[2 * i] as i64, self.explicit[2 * i + 1] as i64);
                    (((n + b + a - eff) / st + 1) as usize, b as usize)
                }
            }
        })
    }

    fn naive(&self, x: &[f32], f: &[f32]) -> (Vec<usize>, Vec<f32>) {
        let [n, h, w, c] = self.x;
        let [kh, kw, fc, o] = self.f;
        let [(oh, pt), (ow, pl)] = self.geometry();
        let og = o / (c / fc);
        let mut out = vec![0f32; n * oh * ow * o];
        for b in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for oc in 0..o {
                        let g = oc / og;
                        let mut acc = 0f64;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy =
                                    (oy * self.stride[0] + ky * self.dil[0]) as i64 - pt as i64;
                                let ix =
                                    (ox * self.stride[1] + kx * self.dil[1]) as i64 - pl as i64;
                                if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                                    continue;
                                }
                                for ci in 0..fc {
                                    let xv = x[((b * h + iy as usize) * w + ix as usize) * c
                                        + g * fc
                                        + ci];
                                    acc +=
                                        xv as f64 * f[((ky * kw + kx) * fc + ci) * o + oc] as f64;
                                }
                            }
                        }
                        out[((b * oh + oy) * ow + ox) * o + oc] = acc as f32;
                    }
                }
            }
        }
        (vec![n, oh, ow, o], out)
    }
}

fn cases() -> Vec<Case> {
    let c = |x, f, stride, dil, pad, explicit| Case {
        x,
        f,
        stride,
        dil,
        pad,
        explicit,
    };
    vec![
        c([2, 5, 6, 3], [3, 3, 3, 4], [1, 1], [1, 1], "SAME", [0; 4]),
        c([1, 6, 7, 2], [2, 4, 2, 3], [2, 3], [1, 1], "SAME", [0; 4]),
        c([2, 7, 6, 3], [3, 2, 3, 2], [2, 1], [1, 1], "VALID", [0; 4]),
        c([1, 9, 8, 2], [3, 3, 2, 3], [1, 2], [2, 1], "SAME", [0; 4]),
        c(
            [1, 5, 5, 2],
            [2, 3, 2, 2],
            [1, 1],
            [1, 1],
            "EXPLICIT",
            [2, 1, 0, 3],
        ),
        c([2, 4, 5, 4], [2, 2, 2, 6], [1, 1], [1, 1], "SAME", [0; 4]),
        c([3, 4, 4, 5], [1, 1, 5, 7], [1, 1], [1, 1], "VALID", [0; 4]),
        c([1, 4, 4, 3], [1, 1, 3, 2], [2, 2], [1, 1], "SAME", [0; 4]),
        c([1, 3, 3, 1], [3, 3, 1, 1], [1, 1], [1, 1], "VALID", [0; 4]),
    ]
}

#[test]
fn conv2d_matches_naive_in_both_formats() {
    for (i, case) in cases().iter().enumerate() {
        let x = random(case.x.iter().product(), 10 + i as u64);
        let f = random(case.f.iter().product(), 20 + i as u64);
        let (dims, want) = case.naive(&x, &f);
        let xt = f32s(&case.x, &x);
        let ft = f32s(&case.f, &f);
        let out = run1("Conv2D", &case.attrs("NHWC"), vec![xt.clone(), ft.clone()]);
        assert_close(&out, &dims, &want, 1e-5);
        let nchw = run1("Conv2D", &case.attrs("NCHW"), vec![nhwc_to_nchw(&xt), ft]);
        assert_eq!(
            nchw,
            nhwc_to_nchw(&out),
            "case {i}: NCHW differs from NHWC transposed"
        );
    }
}

#[test]
fn conv2d_same_puts_the_odd_pad_after() {
    let x = f32s(
        &[1, 4, 4, 1],
        &(1..=16).map(|v| v as f32).collect::<Vec<_>>(),
    );
    let f = f32s(&[2, 2, 1, 1], &[1.0; 4]);
    let attrs = [("strides", ints(&[1, 1, 1, 1])), ("padding", s("SAME"))];
    let out = run1("Conv2D", &attrs, vec![x, f]);
    #[rustfmt::skip]
    let want = [14.0, 18.0, 22.0, 12.0,
                30.0, 34.0, 38.0, 20.0,
                46.0, 50.0, 54.0, 28.0,
                27.0, 29.0, 31.0, 16.0];
    assert_close(&out, &[1, 4, 4, 1], &want, 0.0);
    let i = run1(
        "Conv2D",
        &attrs,
        vec![
            i32s(&[1, 2, 2, 1], &[1, 2, 3, 4]),
            i32s(&[2, 2, 1, 1], &[1, 1, 1, 1]),
        ],
    );
    assert_eq!(i.as_slice::<i32>().unwrap(), &[10, 6, 7, 4]);
}

#[test]
fn conv2d_rejects_bad_shapes() {
    let attrs = [("strides", ints(&[1, 1, 1, 1])), ("padding", s("VALID"))];
    let e = run(
        "Conv2D",
        &attrs,
        vec![
            f32s(&[1, 2, 2, 3], &[0.0; 12]),
            f32s(&[1, 1, 2, 1], &[0.0; 2]),
        ],
    )
    .unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    assert!(run(
        "Conv2D",
        &attrs,
        vec![
            f32s(&[1, 2, 2, 1], &[0.0; 4]),
            f32s(&[3, 3, 1, 1], &[0.0; 9])
        ]
    )
    .is_ok());
    assert!(run(
        "Conv2D",
        &attrs,
        vec![f32s(&[1, 1, 1, 1], &[0.0]), f32s(&[3, 3, 1, 1], &[0.0; 9])]
    )
    .is_err());
    let bad = [("strides", ints(&[2, 1, 1, 1])), ("padding", s("VALID"))];
    assert!(run(
        "Conv2D",
        &bad,
        vec![f32s(&[1, 2, 2, 1], &[0.0; 4]), f32s(&[1, 1, 1, 1], &[0.0])]
    )
    .is_err());
}

#[test]
fn conv2d_gradients_satisfy_the_adjoint_identity() {
    for (i, case) in cases().iter().enumerate() {
        for format in ["NHWC", "NCHW"] {
            let mut xt = f32s(&case.x, &random(case.x.iter().product(), 30 + i as u64));
            let ft = f32s(&case.f, &random(case.f.iter().product(), 40 + i as u64));
            if format == "NCHW" {
                xt = nhwc_to_nchw(&xt);
            }
            let attrs = case.attrs(format);
            let y = run1("Conv2D", &attrs, vec![xt.clone(), ft.clone()]);
            let dy = f32s(y.dims(), &random(y.num_elements(), 50 + i as u64));
            let sizes = i32s(
                &[4],
                &xt.dims().iter().map(|&d| d as i32).collect::<Vec<_>>(),
            );
            let dx = run1(
                "Conv2DBackpropInput",
                &attrs,
                vec![sizes, ft.clone(), dy.clone()],
            );
            assert_eq!(dx.dims(), xt.dims());
            let fsizes = i32s(&[4], &case.f.map(|d| d as i32));
            let dw = run1(
                "Conv2DBackpropFilter",
                &attrs,
                vec![xt.clone(), fsizes, dy.clone()],
            );
            assert_eq!(dw.dims(), ft.dims());
            let (a, b, c) = (dot(&y, &dy), dot(&xt, &dx), dot(&ft, &dw));
            assert!(
                (a - b).abs() < 1e-4 * (1.0 + a.abs()),
                "case {i} {format}: <y,dy>={a} <x,dx>={b}"
            );
            assert!(
                (a - c).abs() < 1e-4 * (1.0 + a.abs()),
                "case {i} {format}: <y,dy>={a} <f,dw>={c}"
            );
            let v2 = vec![xt.clone(), ft.clone(), dy.clone()];
            assert_eq!(run1("Conv2DBackpropInputV2", &attrs, v2), dx);
            if case.f[2] == case.x[3] {
                // input_sizes may give only (H, W).
                let hw = i32s(&[2], &[case.x[1] as i32, case.x[2] as i32]);
                assert_eq!(
                    run1("Conv2DBackpropInput", &attrs, vec![hw, ft.clone(), dy]),
                    dx
                );
            }
        }
    }
}

#[test]
fn depthwise_matches_naive_and_its_gradients() {
    let (x, c, m) = ([2, 5, 6, 3], 3, 2);
    let xv = random(x.iter().product(), 60);
    let fv = random(3 * 3 * c * m, 61);
    let attrs = [
        ("strides", ints(&[1, 2, 1, 1])),
        ("padding", s("SAME")),
        ("dilations", ints(&[1, 1, 2, 1])),
    ];
    let xt = f32s(&x, &xv);
    let ft = f32s(&[3, 3, c, m], &fv);
    let y = run1(
        "DepthwiseConv2dNative",
        &attrs,
        vec![xt.clone(), ft.clone()],
    );
    assert_eq!(y.dims(), &[2, 3, 6, 6]);
    // Reference: a grouped Conv2D with one group per input channel and the filter
    // rearranged to [3, 3, 1, C*M].
    let grouped = f32s(&[3, 3, 1, c * m], &fv);
    let want = run1("Conv2D", &attrs, vec![xt.clone(), grouped]);
    assert_close(&y, want.dims(), want.as_slice::<f32>().unwrap(), 1e-5);
    let dy = f32s(y.dims(), &random(y.num_elements(), 62));
    let dx = run1(
        "DepthwiseConv2dNativeBackpropInput",
        &attrs,
        vec![i32s(&[4], &[2, 5, 6, 3]), ft.clone(), dy.clone()],
    );
    let dw = run1(
        "DepthwiseConv2dNativeBackpropFilter",
        &attrs,
        vec![xt.clone(), i32s(&[4], &[3, 3, 3, 2]), dy.clone()],
    );
    let a = dot(&y, &dy);
    assert!((a - dot(&xt, &dx)).abs() < 1e-4 * (1.0 + a.abs()));
    assert!((a - dot(&ft, &dw)).abs() < 1e-4 * (1.0 + a.abs()));
    let nchw = [
        ("strides", ints(&[1, 1, 2, 1])),
        ("padding", s("SAME")),
        ("dilations", ints(&[1, 1, 1, 2])),
        ("data_format", s("NCHW")),
    ];
    let yn = run1("DepthwiseConv2dNative", &nchw, vec![nhwc_to_nchw(&xt), ft]);
    assert_eq!(yn, nhwc_to_nchw(&y));
}
