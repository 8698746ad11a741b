//! Tests of the CUDA source of `_FusedElementwise` (`fused_source.rs`) without a GPU: the
//! generated C is compiled by the host C compiler (`$CC`, else `cc`; skipped with a printed
//! reason when there is none) and run: `rill_apply` of every op against its CPU functor
//! on every pair of special values, bit for bit where the op is exact; whole kernels
//! (dense, scalar and broadcast inputs, a grid of several blocks and threads) against the
//! CPU kernel. With the `cuda` feature and NVRTC present, every op in every float dtype
//! and every access also compiles to PTX with NVRTC.

use std::path::PathBuf;
use std::process::Command;

use rill_graph::{DType, Tensor};

use super::fused_source::{accesses, apply_source, kernel_source, Access, KERNEL_NAME};
use crate::cpu::fused::elementwise::collapsed_broadcast;
use crate::cpu::fused::jit_tests::{pairs, same};
use crate::cpu::fused::program::{binary1, leaky_relu, unary1, Op, Program, BINARY_OPS, UNARY_OPS};
use crate::cpu::fused::tests::{assert_same, data, fused, tensor, BENCH_CHAIN};
use crate::cpu::math::num::Float;

/// Ops whose CUDA and CPU results may differ in the last bits: the C library's
/// transcendental functions (Rill's CPU Erf/Erfc are its own series).
const INEXACT: &[&str] = &[
    "Exp", "Expm1", "Log", "Log1p", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh",
    "Asinh", "Acosh", "Atanh", "Tanh", "Sigmoid", "Erf", "Erfc", "Elu", "Selu", "Softplus", "Pow",
    "Atan2", "Xlogy", "Xlog1py",
];

/// The declarations a kernel expects from CUDA, for running it on the host.
const HOST_PRELUDE: &str = concat!(
    "#include <math.h>\n#include <stdio.h>\n#include <stdlib.h>\n",
    "typedef struct { unsigned int x; } rill_dim3;\n",
    "static rill_dim3 blockIdx, threadIdx, blockDim, gridDim;\n",
);

/// The host C compiler, or why there is none.
fn host_cc() -> Result<String, String> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    match Command::new(&cc).arg("--version").output() {
        Ok(o) if o.status.success() => Ok(cc),
        _ => Err(format!("no host C compiler ('{cc}' does not run)")),
    }
}

/// Compiles `c` with `cc` in a fresh folder, runs it with `input` as its stdin file and
/// returns what it wrote to its output file.
fn compile_and_run(cc: &str, tag: &str, c: &str, input: &[u8]) -> Vec<u8> {
    let dir: PathBuf = std::env::temp_dir().join(format!("rill-cuda-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (src, exe) = (dir.join("k.c"), dir.join("k"));
    let (inp, out) = (dir.join("in.bin"), dir.join("out.bin"));
    std::fs::write(&src, c).unwrap();
    std::fs::write(&inp, input).unwrap();
    let built = Command::new(cc)
        .args([
            "-std=c11",
            "-O1",
            "-ffp-contract=off",
            "-fno-fast-math",
            "-o",
        ])
        .arg(&exe)
        .arg(&src)
        .arg("-lm")
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "the generated C does not compile:\n{}\n{c}",
        String::from_utf8_lossy(&built.stderr)
    );
    let ran = Command::new(&exe).arg(&inp).arg(&out).output().unwrap();
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    bytes
}

fn to_bytes<T: bytemuck::Pod>(v: &[T]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}

fn from_bytes<T: bytemuck::Pod>(b: &[u8]) -> Vec<T> {
    bytemuck::pod_collect_to_vec(b)
}

/// An f32 or f64 tensor's elements as bytes.
fn tensor_bytes(t: &Tensor) -> Vec<u8> {
    match t.dtype() {
        DType::F32 => to_bytes(t.as_slice::<f32>().unwrap()),
        _ => to_bytes(t.as_slice::<f64>().unwrap()),
    }
}

/// An f32 or f64 tensor from its elements' bytes.
fn tensor_from_bytes(dtype: DType, dims: &[usize], b: &[u8]) -> Tensor {
    match dtype {
        DType::F32 => Tensor::new(dims, from_bytes::<f32>(b)).unwrap(),
        _ => Tensor::new(dims, from_bytes::<f64>(b)).unwrap(),
    }
}

/// Every op as a one-instruction program over registers 0 and 1.
fn one_op_programs() -> Vec<(String, Program)> {
    let texts = UNARY_OPS
        .iter()
        .map(|op| format!("{op} 0"))
        .chain(BINARY_OPS.iter().map(|op| format!("{op} 0 1")))
        .chain(["LeakyRelu 0 0.3".to_string()]);
    texts
        .map(|t| {
            let prog = Program::parse(2, &[t.clone().into_bytes()]).unwrap();
            (t, prog)
        })
        .collect()
}

/// What the CPU computes for instruction `op` of `x` and `y`.
fn functor<T: Float>(op: Op, x: T, y: T) -> T {
    match op {
        Op::Un(u) => unary1(u, x),
        Op::Bin(b) => binary1(b, x, y),
        Op::LeakyRelu(alpha) => leaky_relu(x, T::from_f64(f64::from(alpha))),
    }
}

/// Within `rel` of `want` (relative to `want`, or to `floor` when smaller); non-finite
/// values must be the same.
fn close<T: Float>(got: T, want: T, rel: f64, floor: f64) -> bool {
    let (g, w) = (got.to_f64(), want.to_f64());
    if g.is_nan() || w.is_nan() || g.is_infinite() || w.is_infinite() {
        return same(got, want);
    }
    (g - w).abs() <= rel * w.abs().max(floor)
}

fn check_apply<T: Float + bytemuck::Pod>(cc: &str, dtype: DType, rel: f64, floor: f64) {
    let programs = one_op_programs();
    let (xs, ys) = pairs();
    let x: Vec<T> = xs.iter().map(|&v| T::from_f64(v)).collect();
    let y: Vec<T> = ys.iter().map(|&v| T::from_f64(v)).collect();
    let n = x.len();
    let mut c = String::from(HOST_PRELUDE);
    let mut main = format!(
        "int main(int argc, char** argv) {{\n  long n = {n}; rill_c* x = malloc(2 * n * sizeof(rill_c)); rill_c* y = x + n;\n  FILE* f = fopen(argv[1], \"rb\"); if (fread(x, sizeof(rill_c), 2 * n, f) != (size_t)(2 * n)) return 1; fclose(f);\n  FILE* o = fopen(argv[2], \"wb\");\n"
    );
    for (k, (_, prog)) in programs.iter().enumerate() {
        c.push_str(&format!("#define rill_apply rill_apply_{k}\n"));
        c.push_str(&apply_source(prog, dtype).unwrap());
        c.push_str("#undef rill_apply\n");
        main.push_str(&format!(
            "  for (long i = 0; i < n; i++) {{ rill_c v = rill_apply_{k}(x[i], y[i]); fwrite(&v, sizeof v, 1, o); }}\n"
        ));
    }
    main.push_str("  fclose(o);\n  return 0;\n}\n");
    c.push_str(&main);
    let input = [to_bytes(&x), to_bytes(&y)].concat();
    let got: Vec<T> = from_bytes(&compile_and_run(cc, &format!("apply-{dtype}"), &c, &input));
    assert_eq!(got.len(), n * programs.len());
    let mut wrong = Vec::new();
    for ((text, prog), got) in programs.iter().zip(got.chunks(n)) {
        let op = prog.instrs[0].op;
        let name = text.split(' ').next().unwrap();
        let exact = !INEXACT.contains(&name);
        // Rill's CPU Erf/Erfc are its own f64 series, good to about 2e-13 (C: ~1 ulp).
        let rel = if name.starts_with("Erf") {
            rel.max(1e-12)
        } else {
            rel
        };
        let first_wrong = (0..n).find(|&i| {
            let want = functor(op, x[i], y[i]);
            !if exact {
                same(got[i], want)
            } else {
                close(got[i], want, rel, floor)
            }
        });
        if let Some(i) = first_wrong {
            let want = functor(op, x[i], y[i]);
            wrong.push(format!(
                "{text} {dtype} of ({:?}, {:?}): CUDA source {:?}, CPU {want:?}",
                x[i], y[i], got[i]
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_op_matches_its_functor_when_compiled_for_the_host() {
    let cc = match host_cc() {
        Ok(cc) => cc,
        Err(why) => return eprintln!("skipped: {why}"),
    };
    check_apply::<f32>(&cc, DType::F32, 4e-7, f64::from(f32::MIN_POSITIVE));
    check_apply::<f64>(&cc, DType::F64, 1e-15, f64::MIN_POSITIVE);
}

/// Runs the whole kernel for `ops` on the host, over a grid of 3 blocks of 2 threads, each
/// input read densely, as a scalar or strided (broadcast) as its shape says, and returns
/// its output (f32 or f64).
fn run_kernel_on_host(cc: &str, ops: &[&str], inputs: &[Tensor], out_dims: &[usize]) -> Tensor {
    let dtype = inputs[0].dtype();
    let n: usize = out_dims.iter().product();
    let dims: Vec<&[usize]> = inputs.iter().map(Tensor::dims).collect();
    let access = accesses(&dims, out_dims).unwrap();
    let mut args = vec!["n".to_string(), "out".to_string()];
    let mut setup = String::new();
    for (k, (t, a)) in inputs.iter().zip(&access).enumerate() {
        let count = t.num_elements();
        setup.push_str(&format!(
            "  rill_s* in{k} = malloc({count} * sizeof(rill_s)); if (fread(in{k}, sizeof(rill_s), {count}, f) != {count}) return 1;\n"
        ));
        args.push(format!("in{k}"));
        if let Access::Strided(_) = a {
            let (dims, strides) = collapsed_broadcast(t.dims(), out_dims);
            let list = |v: &[usize]| {
                v.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            setup.push_str(&format!(
                "  rill_dims dims{k} = {{{{{}}}}}, strides{k} = {{{{{}}}}};\n",
                list(&dims),
                list(&strides)
            ));
            args.push(format!("dims{k}"));
            args.push(format!("strides{k}"));
        }
    }
    let ops_bytes: Vec<Vec<u8>> = ops.iter().map(|s| s.as_bytes().to_vec()).collect();
    let prog = Program::parse(inputs.len(), &ops_bytes).unwrap();
    let mut c = String::from(HOST_PRELUDE);
    c.push_str(&kernel_source(&prog, dtype, &access).unwrap());
    c.push_str(&format!(
        concat!(
            "int main(int argc, char** argv) {{\n  long long n = {n};\n",
            "  FILE* f = fopen(argv[1], \"rb\");\n{setup}  fclose(f);\n",
            "  rill_s* out = malloc(n * sizeof(rill_s));\n",
            "  blockDim.x = 2; gridDim.x = 3;\n",
            "  for (blockIdx.x = 0; blockIdx.x < 3; blockIdx.x++)\n",
            "    for (threadIdx.x = 0; threadIdx.x < 2; threadIdx.x++) {kernel}({args});\n",
            "  FILE* o = fopen(argv[2], \"wb\"); fwrite(out, sizeof(rill_s), n, o); fclose(o);\n",
            "  return 0;\n}}\n"
        ),
        n = n,
        setup = setup,
        kernel = KERNEL_NAME,
        args = args.join(", ")
    ));
    let input: Vec<u8> = inputs.iter().flat_map(tensor_bytes).collect();
    let bytes = compile_and_run(cc, &format!("kernel-{dtype}"), &c, &input);
    tensor_from_bytes(dtype, out_dims, &bytes)
}

#[test]
fn whole_kernels_match_the_cpu_kernel_when_run_on_the_host() {
    let cc = match host_cc() {
        Ok(cc) => cc,
        Err(why) => return eprintln!("skipped: {why}"),
    };
    for dtype in [DType::F32, DType::F64] {
        let x = tensor(dtype, &[3, 5, 4], &data(60, 1, 4.0));
        let s = tensor(dtype, &[], &[0.5]);
        // y dense, broadcast along the last dim, and along the first and last.
        for y_dims in [&[3, 5, 4][..], &[3, 5, 1], &[5, 1], &[1, 5, 4], &[4]] {
            let count = y_dims.iter().product();
            let y = tensor(dtype, y_dims, &data(count, 2, 3.0));
            let inputs = vec![x.clone(), y, s.clone()];
            let got = run_kernel_on_host(&cc, &BENCH_CHAIN, &inputs, &[3, 5, 4]);
            let want = fused(&BENCH_CHAIN, inputs);
            assert_same(&got, &want, &format!("{dtype} y {y_dims:?}"));
        }
    }
}

#[test]
fn sources_say_what_they_cannot_take() {
    let prog = Program::parse(1, &[b"Relu 0".to_vec()]).unwrap();
    assert!(kernel_source(&prog, DType::I32, &[Access::Dense]).is_err());
    assert!(kernel_source(&prog, DType::F32, &[Access::Dense, Access::Dense]).is_err());
    assert!(kernel_source(&prog, DType::F32, &[Access::Strided(9)]).is_err());
    assert!(kernel_source(&prog, DType::F32, &[Access::Strided(0)]).is_err());
    let huge = Program::parse(1, &[b"LeakyRelu 0 1e39".to_vec()]).unwrap();
    let e = kernel_source(&huge, DType::F32, &[Access::Dense]).unwrap_err();
    assert!(e.to_string().contains("finite"), "{e}");
    // Inputs that do not broadcast to the output.
    assert!(accesses(&[&[2, 3, 4]], &[3, 4]).is_err());
    assert!(accesses(&[&[5]], &[3, 4]).is_err());
    assert_eq!(
        accesses(&[&[3, 4], &[1, 1], &[4], &[]], &[3, 4]).unwrap(),
        [
            Access::Dense,
            Access::Scalar,
            Access::Strided(2),
            Access::Scalar
        ]
    );
    // The same program as the public entry point parses it.
    let text = super::cuda_source(&[b"Relu 0".to_vec()], DType::F16, &[Access::Dense]).unwrap();
    assert!(
        text.contains(KERNEL_NAME) && text.contains("cvt.rn.f16.f32"),
        "{text}"
    );
}

/// Every op in every float dtype, with dense, scalar and strided inputs, compiles with
/// NVRTC (no GPU needed; skipped when libnvrtc is not found).
#[cfg(feature = "cuda")]
#[test]
fn every_op_compiles_with_nvrtc() {
    let mut chain: Vec<String> = Vec::new();
    for (text, prog) in one_op_programs() {
        // Each op reads the previous instruction's register (or input 0) and input 1.
        let prev = if chain.is_empty() { 0 } else { chain.len() + 1 };
        let name = text.split(' ').next().unwrap();
        chain.push(match prog.instrs[0].arity {
            1 if name == "LeakyRelu" => format!("LeakyRelu {prev} 0.3"),
            1 => format!("{name} {prev}"),
            _ => format!("{name} {prev} 1"),
        });
    }
    let ops: Vec<Vec<u8>> = chain.iter().map(|s| s.clone().into_bytes()).collect();
    for dtype in [DType::F32, DType::F64, DType::F16, DType::BF16] {
        for access in [
            [Access::Dense, Access::Scalar],
            [Access::Strided(3), Access::Dense],
        ] {
            let src = super::cuda_source(&ops, dtype, &access).unwrap();
            match super::compile_ptx(&src, (8, 0)) {
                Ok(ptx) => assert!(ptx.contains(KERNEL_NAME), "{dtype}"),
                Err(e) if e.to_string().contains("libnvrtc") => {
                    return eprintln!("skipped: {e}");
                }
                Err(e) => panic!("{dtype} {access:?}: {e}\n{src}"),
            }
        }
    }
}

/// The benchmark chain (dense, broadcast and scalar inputs) and every op on the special
/// values, on GPU 0 against the CPU kernel: bit for bit where every op is exact (skipped
/// with the reason when there is no GPU).
#[cfg(feature = "cuda")]
#[test]
fn programs_match_the_cpu_kernel_on_a_gpu() {
    use super::GpuFusedElementwise;
    let probe = super::probe();
    if probe.gpus.is_empty() {
        return eprintln!("skipped: {}", probe.describe());
    }
    let ops: Vec<Vec<u8>> = BENCH_CHAIN.iter().map(|s| s.as_bytes().to_vec()).collect();
    for dtype in [DType::F32, DType::F64, DType::F16, DType::BF16] {
        let x = tensor(dtype, &[3, 50, 40], &data(6000, 1, 4.0));
        let s = tensor(dtype, &[], &[0.5]);
        for y_dims in [&[3, 50, 40][..], &[3, 50, 1], &[50, 1], &[40]] {
            let y = tensor(dtype, y_dims, &data(y_dims.iter().product(), 2, 3.0));
            let inputs = vec![x.clone(), y, s.clone()];
            let dims: Vec<&[usize]> = inputs.iter().map(Tensor::dims).collect();
            let access = accesses(&dims, &[3, 50, 40]).unwrap();
            let kernel = GpuFusedElementwise::new(0, &ops, dtype, &access).unwrap();
            let got = kernel.run(&inputs, &[3, 50, 40]).unwrap();
            let want = fused(&BENCH_CHAIN, inputs);
            assert_same(&got, &want, &format!("GPU {dtype} y {y_dims:?}"));
        }
    }
    let (xs, ys) = pairs();
    for (text, prog) in one_op_programs() {
        let name = text.split(' ').next().unwrap();
        let x = tensor(DType::F32, &[xs.len()], &xs);
        let y = tensor(DType::F32, &[ys.len()], &ys);
        let kernel = GpuFusedElementwise::new(
            0,
            &[text.clone().into_bytes()],
            DType::F32,
            &[Access::Dense, Access::Dense],
        )
        .unwrap();
        let got = kernel.run(&[x.clone(), y.clone()], &[xs.len()]).unwrap();
        let (g, a, b) = (
            got.as_slice::<f32>().unwrap(),
            x.as_slice::<f32>().unwrap(),
            y.as_slice::<f32>().unwrap(),
        );
        for i in 0..g.len() {
            let want = functor(prog.instrs[0].op, a[i], b[i]);
            let ok = if INEXACT.contains(&name) {
                // CUDA's math library is accurate to a few ulps.
                close(g[i], want, 4e-6, f64::from(f32::MIN_POSITIVE))
            } else {
                same(g[i], want)
            };
            assert!(
                ok,
                "GPU {text} of ({}, {}): {}, CPU {want}",
                a[i], b[i], g[i]
            );
        }
    }
}
