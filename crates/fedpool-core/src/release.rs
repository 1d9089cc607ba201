//! A released model's weights as safetensors: one `f32` tensor `params` (fedpool's flat
//! parameter vector, in the layout `Network` reads), with the architecture in the header's
//! metadata so a reader can rebuild the network and refuse a file for another one.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::{Error, Network};

/// Name of the one tensor.
pub const PARAMS: &str = "params";

/// The safetensors bytes of `params` for `network`, with `extra` metadata (e.g. the model id).
pub fn to_safetensors(
    network: &Network,
    params: &[f32],
    extra: &[(&str, String)],
) -> Result<Vec<u8>, Error> {
    if params.len() != network.n_params() {
        return Err(Error::Model(format!(
            "{} parameters given for a model of {}",
            params.len(),
            network.n_params()
        )));
    }
    let bytes: Vec<u8> = params.iter().flat_map(|p| p.to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, vec![params.len()], &bytes)
        .map_err(|e| Error::Model(format!("safetensors: {e}")))?;
    let mut metadata: HashMap<String, String> = extra
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    metadata.insert(
        "fedpool.model".into(),
        serde_json::to_string(network.spec()).unwrap_or_default(),
    );
    metadata.insert("fedpool.n_inputs".into(), network.n_inputs().to_string());
    metadata.insert("fedpool.n_outputs".into(), network.n_outputs().to_string());
    safetensors::serialize([(PARAMS, view)], Some(metadata))
        .map_err(|e| Error::Model(format!("safetensors: {e}")))
}

/// The parameters and metadata of a safetensors file written by [`to_safetensors`], checked
/// against `network`'s architecture.
pub fn from_safetensors(
    bytes: &[u8],
    network: &Network,
) -> Result<(Vec<f32>, HashMap<String, String>), Error> {
    let bad = |why: String| Error::Model(format!("not a fedpool model file for this model: {why}"));
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let expect = |key: &str, value: String| match metadata.get(key) {
        Some(found) if *found == value => Ok(()),
        Some(found) => Err(bad(format!("{key} is {found}, this model's is {value}"))),
        None => Err(bad(format!("no {key} in its metadata"))),
    };
    expect(
        "fedpool.model",
        serde_json::to_string(network.spec()).unwrap_or_default(),
    )?;
    expect("fedpool.n_inputs", network.n_inputs().to_string())?;
    expect("fedpool.n_outputs", network.n_outputs().to_string())?;
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let view = tensors.tensor(PARAMS).map_err(|e| bad(e.to_string()))?;
    if view.dtype() != Dtype::F32 || view.shape() != [network.n_params()] {
        return Err(bad(format!(
            "`{PARAMS}` is {:?} {:?}, the model needs F32 [{}]",
            view.dtype(),
            view.shape(),
            network.n_params()
        )));
    }
    let params = view
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((params, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelSpec;

    #[test]
    fn weights_round_trip_and_a_file_for_another_model_is_refused() {
        let network = Network::new(&ModelSpec::LogisticRegression, 4, 3).unwrap();
        let params: Vec<f32> = (0..network.n_params()).map(|i| i as f32 * 0.5).collect();
        let bytes = to_safetensors(&network, &params, &[("fedpool.model_id", "m".into())]).unwrap();
        let (back, metadata) = from_safetensors(&bytes, &network).unwrap();
        assert_eq!(back, params);
        assert_eq!(metadata["fedpool.model_id"], "m");
        let other = Network::new(&ModelSpec::LogisticRegression, 5, 3).unwrap();
        let err = from_safetensors(&bytes, &other).unwrap_err().to_string();
        assert!(
            err.contains("fedpool.n_inputs is 4, this model's is 5"),
            "{err}"
        );
        assert!(from_safetensors(b"garbage", &network).is_err());
    }
}
